"""Give each concurrently running GPU job its own device on a multi-GPU machine.

Snakemake's ``--resources gpu=N`` limits how many GPU jobs run at once but tells no job
which GPU to use. :func:`claim_device` takes an exclusive ``flock`` on one lock file per
device index and exports ``CUDA_VISIBLE_DEVICES`` before torch initialises CUDA. The kernel
drops the lock when the process ends, also when it is killed, so a dead job never holds a
device. Nothing happens when ``CUDA_VISIBLE_DEVICES`` is already set (SLURM sets it for
its jobs) or when the machine has no GPU.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

DEVICE_NAMES = ("auto", "cpu", "cuda")  # the `device` key of every stage that runs a model
ENV_DEVICES = "CXRGEN_GPU_DEVICES"  # e.g. "0,1,2,3": the indices jobs may claim
ENV_LOCK_DIR = "CXRGEN_GPU_LOCK_DIR"


def visible_gpu_indices() -> list[int]:
    """Device indices jobs may claim: $CXRGEN_GPU_DEVICES, else those nvidia-smi lists."""
    spec = os.environ.get(ENV_DEVICES)
    if spec is not None:
        return [int(i) for i in spec.replace(" ", "").split(",") if i != ""]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return list(range(sum(1 for line in out.splitlines() if line.startswith("GPU "))))


def default_lock_dir() -> Path:
    return Path(os.environ.get(ENV_LOCK_DIR, Path(tempfile.gettempdir()) / "cxrgen-gpu-locks"))


@contextlib.contextmanager
def claim_device(
    lock_dir: str | Path | None = None, poll_s: float = 0.5, timeout_s: float | None = None
) -> Iterator[int | None]:
    """Hold one free device index for the duration of the block; yields it (None: no pinning).

    Sets ``CUDA_VISIBLE_DEVICES`` to the claimed index inside the block (restored after).
    Waits, polling, while every device is held by another job.
    """
    with claim_devices(1, lock_dir, poll_s, timeout_s) as indices:
        yield None if indices is None else indices[0]


@contextlib.contextmanager
def claim_devices(
    count: int,
    lock_dir: str | Path | None = None,
    poll_s: float = 0.5,
    timeout_s: float | None = None,
) -> Iterator[tuple[int, ...] | None]:
    """Hold ``count`` free device indices (all or none, so two jobs never deadlock half-way).

    Sets ``CUDA_VISIBLE_DEVICES`` to them (comma-separated) inside the block; yields them, or
    None where nothing is pinned (variable already set, or no GPU).
    """
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        yield None
        return
    indices = visible_gpu_indices()
    if not indices:
        yield None
        return
    if count > len(indices):
        raise RuntimeError(f"{count} GPUs asked for but only {indices} can be claimed")
    lock_dir = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    lock_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    while True:
        held: list[tuple[int, object]] = []
        for index in indices:
            handle = open(lock_dir / f"gpu{index}.lock", "a+")  # noqa: SIM115 (held while in use)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            held.append((index, handle))
            if len(held) == count:
                break
        if len(held) == count:
            claimed = tuple(i for i, _ in held)
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, claimed))
            log.info("claimed GPU(s) %s (CUDA_VISIBLE_DEVICES)", ",".join(map(str, claimed)))
            try:
                yield claimed
            finally:
                del os.environ["CUDA_VISIBLE_DEVICES"]
                _release(held)
            return
        _release(held)
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise TimeoutError(f"no {count} free GPU(s) among {indices} after {timeout_s} s")
        time.sleep(poll_s)


def _release(held) -> None:
    for _, handle in held:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def check_device_name(name: str) -> None:
    """ConfigError unless ``name`` is one of :data:`DEVICE_NAMES`."""
    from cxrgen.config import check

    check(name in DEVICE_NAMES, f"device must be one of {DEVICE_NAMES}, got {name!r}")


def resolve_device(name: str):
    """The torch device of a ``device`` key: 'auto' = CUDA where there is one, else CPU.

    torch is imported here, not at module level: :func:`claim_device` must run before it.
    """
    import torch

    from cxrgen.config import check

    check(name != "cuda" or torch.cuda.is_available(), "device is 'cuda' but no GPU is seen")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)
