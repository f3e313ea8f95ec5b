"""Per-job GPU pinning with fake device indices (no GPU needed)."""

import os
import subprocess
import sys
import textwrap
import time

import pytest

from cxrgen.devices import claim_device


@pytest.fixture
def fake_gpus(monkeypatch, tmp_path):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("CXRGEN_GPU_DEVICES", "0,1")
    monkeypatch.setenv("CXRGEN_GPU_LOCK_DIR", str(tmp_path / "locks"))
    return tmp_path / "locks"


HOLDER = textwrap.dedent(
    """
    import os, sys, time
    from cxrgen.devices import claim_device
    with claim_device() as index:
        print(index, os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
        time.sleep(float(sys.argv[1]))
    """
)


def start_holder(seconds):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(seconds)], stdout=subprocess.PIPE, text=True
    )
    line = proc.stdout.readline().split()
    return proc, int(line[0]), line[1]


def test_concurrent_jobs_get_distinct_devices_and_release_on_death(fake_gpus):
    a, ia, env_a = start_holder(30)
    b, ib, env_b = start_holder(30)
    try:
        assert {ia, ib} == {0, 1} and env_a == str(ia) and env_b == str(ib)
        with pytest.raises(TimeoutError):  # both held: a third job waits
            with claim_device(poll_s=0.05, timeout_s=0.3):
                pass
        a.kill()  # a killed job frees its device at once
        a.wait()
        t0 = time.monotonic()
        with claim_device(poll_s=0.05, timeout_s=5) as index:
            assert index == ia and os.environ["CUDA_VISIBLE_DEVICES"] == str(ia)
        assert time.monotonic() - t0 < 5
        assert "CUDA_VISIBLE_DEVICES" not in os.environ
    finally:
        for p in (a, b):
            p.kill()
            p.wait()


def test_no_pinning_without_gpus_or_when_already_set(monkeypatch, tmp_path):
    monkeypatch.setenv("CXRGEN_GPU_DEVICES", "")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with claim_device(tmp_path) as index:
        assert index is None and "CUDA_VISIBLE_DEVICES" not in os.environ
    monkeypatch.setenv("CXRGEN_GPU_DEVICES", "0,1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # e.g. set by SLURM
    with claim_device(tmp_path) as index:
        assert index is None and os.environ["CUDA_VISIBLE_DEVICES"] == "3"


def test_several_devices_are_claimed_all_or_none(fake_gpus, monkeypatch):
    from cxrgen.devices import claim_devices

    monkeypatch.setenv("CXRGEN_GPU_DEVICES", "0,1,2")
    with claim_devices(2) as pair:
        assert pair == (0, 1) and os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"
        mine = os.environ.pop("CUDA_VISIBLE_DEVICES")  # as another job would see it
        try:
            with pytest.raises(TimeoutError), claim_devices(2, poll_s=0.05, timeout_s=0.2):
                pass  # only device 2 is free: nothing is held half-way
            with claim_device() as single:
                assert single == 2
        finally:
            os.environ["CUDA_VISIBLE_DEVICES"] = mine
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    with pytest.raises(RuntimeError, match="4 GPUs asked for"), claim_devices(4):
        pass
