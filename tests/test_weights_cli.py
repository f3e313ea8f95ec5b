"""`cxrgen weights download / check`: offline downloads fail with a message saying what to do,
files are found where the pipeline looks and their sha256 is checked against the prefix in their
names, `--dir` downloads and checks a folder of one's own. Nothing here reaches the internet:
the downloader is torch.hub's own, fed file:// URLs or URLs that cannot resolve, or replaced."""

import hashlib
import time
from pathlib import Path
from urllib.error import URLError

import pytest
import torch

from cxrgen.cli import main
from cxrgen.errors import CxrgenError
from cxrgen.metrics import weights


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def fake_weights(monkeypatch, source: Path, url_base: str | None = None) -> dict[str, bytes]:
    """Three small files in `source` standing in for WEIGHT_FILES, each named with the first 8
    hex digits of its sha256 as torch.hub names files; URLs are file:// URLs of them (or
    url_base + name). Returns name -> content."""
    source.mkdir(parents=True, exist_ok=True)
    contents, files = {}, []
    for key in ("fid_inception", "tv_inception", "alexnet"):
        content = f"weights of {key}".encode()
        name = f"{key}-{hashlib.sha256(content).hexdigest()[:8]}.pth"
        (source / name).write_bytes(content)
        url = (url_base + name) if url_base else (source / name).as_uri()
        files.append(weights.WeightFile(key, name, url, key))
        contents[name] = content
    monkeypatch.setattr(weights, "WEIGHT_FILES", tuple(files))
    return contents


def test_the_real_files_are_checked_with_the_sha256_prefix_of_their_names():
    prefixes = {w.filename: w.hash_prefix for w in weights.WEIGHT_FILES}
    assert prefixes == {
        "pt_inception-2015-12-05-6726825d.pth": "6726825d",  # not the date's digits
        "inception_v3_google-0cc3c7bd.pth": "0cc3c7bd",
        "alexnet-owt-7be5be79.pth": "7be5be79",
    }
    assert [w.url.rsplit("/", 1)[-1] for w in weights.WEIGHT_FILES] == list(prefixes)


def test_download_offline_names_the_url_the_folder_and_copying_by_hand(
    torch_home, monkeypatch, capsys
):
    tried = []

    def offline(url, dst, hash_prefix=None, progress=True):
        tried.append((url, hash_prefix))
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    folder = torch_home / "hub" / "checkpoints"
    with pytest.raises(CxrgenError) as err:
        weights.download_weights()
    message = str(err.value)
    assert all(w.url in message for w in weights.WEIGHT_FILES)
    assert str(folder) in message and "copy the files by hand" in message
    assert tried == [(w.url, w.hash_prefix) for w in weights.WEIGHT_FILES]
    assert list(folder.iterdir()) == []

    capsys.readouterr()
    assert main(["-q", "weights", "download"]) == 2  # the CLI's error exit, no traceback
    logged = capsys.readouterr().err  # the command logs to standard error
    assert "ERROR" in logged and "Traceback" not in logged
    assert "copy the files by hand" in logged and weights.INCEPTION_URL in logged


def test_download_from_an_unresolvable_host_fails_fast_with_the_real_downloader(
    torch_home, tmp_path, monkeypatch, capsys
):
    fake_weights(monkeypatch, tmp_path / "src", url_base="https://weights.invalid/")
    start = time.monotonic()
    assert main(["-q", "weights", "download"]) == 2
    assert time.monotonic() - start < 5
    logged = capsys.readouterr().err
    assert "https://weights.invalid/alexnet-" in logged and "URLError" in logged
    assert str(torch_home / "hub" / "checkpoints") in logged
    assert not any((torch_home / "hub" / "checkpoints").iterdir())  # no .partial left


def test_check_finds_a_file_in_the_cache_and_checks_its_hash(torch_home, tmp_path, monkeypatch):
    contents = fake_weights(monkeypatch, tmp_path / "src")
    ok, corrupt, absent = weights.WEIGHT_FILES
    cache = torch_home / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / ok.filename).write_bytes(contents[ok.filename])
    (cache / corrupt.filename).write_bytes(contents[corrupt.filename] + b"!")

    checks = weights.check_weights()
    assert [c.status for c in checks] == ["present, hash ok", "present, hash MISMATCH", "missing"]
    assert checks[0].path == cache / ok.filename and checks[1].path == cache / corrupt.filename
    assert checks[2].path is None and checks[2].looked_at == (cache / absent.filename,)
    assert "hash MISMATCH (sha256 " in checks[1].line() and str(cache) in checks[2].line()
    assert main(["-q", "weights", "check"]) == 2  # not all present and sound

    (cache / corrupt.filename).write_bytes(contents[corrupt.filename])
    (cache / absent.filename).write_bytes(contents[absent.filename])
    assert all(c.ok for c in weights.check_weights())
    assert main(["-q", "weights", "check"]) == 0


def test_download_dir_puts_the_files_there_and_check_dir_finds_them(
    torch_home, tmp_path, monkeypatch
):
    contents = fake_weights(monkeypatch, tmp_path / "src")  # file:// URLs, torch's downloader
    mine = tmp_path / "mine"
    assert main(["-q", "weights", "download", "--dir", str(mine)]) == 0
    assert {p.name: p.read_bytes() for p in mine.iterdir()} == contents
    assert not (torch_home / "hub" / "checkpoints").exists()
    checks = weights.check_weights([mine])
    assert all(c.ok and c.path.parent == mine for c in checks)
    assert main(["-q", "weights", "check", "--dir", str(mine)]) == 0
    assert main(["-q", "weights", "check"]) == 2  # the hub cache alone lacks them
    # what the pipeline loads: the same lookup (weights_dir, then the hub cache)
    first = weights.WEIGHT_FILES[0]
    assert weights.locate(first.filename, first.url, [mine]) == mine / first.filename

    calls = []
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: calls.append(a))
    weights.download_weights(mine)  # sound files are not fetched again
    assert calls == []


def test_a_download_whose_hash_differs_is_refused_and_not_written(tmp_path, monkeypatch):
    fake_weights(monkeypatch, tmp_path / "src")
    first = weights.WEIGHT_FILES[0]
    (tmp_path / "src" / first.filename).write_bytes(b"tampered")
    with pytest.raises(CxrgenError, match="invalid hash value") as err:
        weights.download_weights(tmp_path / "mine")
    assert first.url in str(err.value) and "1 of 3" in str(err.value)
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == sorted(
        w.filename for w in weights.WEIGHT_FILES[1:]
    )


def test_missing_weights_name_the_download_command(torch_home):
    with pytest.raises(weights.WeightsMissing, match="cxrgen weights download"):
        weights.locate(weights.ALEXNET_FILE, weights.ALEXNET_URL)
