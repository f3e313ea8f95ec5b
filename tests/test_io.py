"""Atomic writes: all or nothing, and files get the usual permissions."""

import os
import stat

import numpy as np
import pytest

from cxrgen import io


def test_a_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "table.json"
    io.write_json(target, {"a": 1})
    with pytest.raises(RuntimeError), io.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert io.read_json(target) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.json"]


def test_files_get_the_mode_of_the_umask_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        io.write_text(tmp_path / "a.txt", "x")
        io.save_npy(tmp_path / "b.npy", np.zeros(3))
    finally:
        os.umask(old)
    for name in ("a.txt", "b.npy"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644


def test_memmap_appears_only_when_complete(tmp_path):
    target = tmp_path / "x.npy"
    with pytest.raises(ValueError), io.open_npy_memmap(target, (4, 2), np.float32) as mm:
        mm[:2] = 1
        assert not target.exists()
        raise ValueError("stop")
    assert not target.exists()
    with io.open_npy_memmap(target, (4, 2), np.float32) as mm:
        mm[:] = 2
    assert np.load(target).sum() == 16
