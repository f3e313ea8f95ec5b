"""The environment is what the lock says, the docs say how to use it, CI runs what README says."""

import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def lock_versions():
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return {p["name"]: p["version"] for p in lock["package"]}


def dep_name(spec: str) -> str:
    return re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0].lower()


def test_conda_env_pins_match_the_lock():
    env = yaml.safe_load((ROOT / "envs" / "cxrgen.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pins = dict(line.split("==") for line in pip)
    pins = {k.lower(): v for k, v in pins.items()}
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    locked = lock_versions()
    assert set(pins) == {dep_name(d) for d in deps}
    for name, version in pins.items():
        assert locked[name] == version, (
            f"envs/cxrgen.yaml pins {name}=={version}, lock has {locked[name]}"
        )
    assert "python=3.11" in env["dependencies"]


def readme_commands():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"^```(?:bash|sh)\n(.*?)^```", text, flags=re.S | re.M)


def test_readme_starts_with_pipeline_and_test_commands():
    blocks = readme_commands()
    first = blocks[0].strip().splitlines()
    assert len(first) == 2, "README's first code block holds exactly the two set-up commands"
    assert "snakemake" in first[0] and "pip install uv" in first[0]
    assert "pytest" in first[1]


def test_ci_runs_the_readme_test_command():
    test_cmd = readme_commands()[0].strip().splitlines()[1]
    test_cmd = test_cmd.split("&&")[-1].strip()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_cmd in [line.strip() for line in ci], f"{test_cmd!r} not run by .ci/run"
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    steps = [s.get("run", "") for job in wf["jobs"].values() for s in job["steps"]]
    assert "bash .ci/run" in steps


def test_torchvision_and_metric_packages_import():
    # the reason the lock pins the registry's torch build: torchvision must import with it
    import lpips  # noqa: F401
    import pytorch_fid.inception  # noqa: F401
    import torch
    import torchvision

    assert torchvision.ops.nms(torch.zeros(1, 4), torch.ones(1), 0.5).tolist() == [0]


@pytest.mark.parametrize(
    "uid",
    [
        "1.2.840.10008.1.2.4.50",  # JPEG Baseline (the real RSNA files)
        "1.2.840.10008.1.2.4.51",  # JPEG Extended
        "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
        "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
        "1.2.840.10008.1.2.4.91",  # JPEG 2000
        "1.2.840.10008.1.2.5",  # RLE Lossless
    ],
)
def test_pixel_decoders_installed(uid):
    from pydicom.pixels.decoders.base import get_decoder

    assert get_decoder(uid).is_available, f"no installed decoder for {uid}"
