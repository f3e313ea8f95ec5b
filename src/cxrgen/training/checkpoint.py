"""Resumable training state: one atomically written file per checkpoint.

A checkpoint holds the step, the state of every named stateful object (modules, EMA,
optimizers, LR schedulers, the grad scaler: anything with ``state_dict`` /
``load_state_dict``), the RNG states (torch, CUDA, numpy, python) and arbitrary extra state
(loss history, a decaying loss weight ...). It is written with ``torch.save`` of tensors and
plain Python values only and read with ``torch.load(weights_only=True)``: no pickled code.

    ckpt = Checkpointer(out / "checkpoints", keep=2, model=net, ema=ema, optimizer=opt)
    step, extra = ckpt.restore_latest() or (0, {})
    ...
    ckpt.save(step, extra={"lambda_ds": 1.5})

Files are ``step-00001000.pt``; after each save only the newest ``keep`` remain.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from cxrgen.errors import ConfigError, DataError
from cxrgen.io import atomic_path

log = logging.getLogger(__name__)

PATTERN = re.compile(r"^step-(\d+)\.pt$")
FORMAT_VERSION = 1


class Stateful(Protocol):
    def state_dict(self) -> Mapping[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any], /) -> Any: ...


def checkpoint_path(directory: str | Path, step: int) -> Path:
    return Path(directory) / f"step-{step:08d}.pt"


def list_checkpoints(directory: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every finished checkpoint in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := PATTERN.match(p.name))]
    return sorted(found)


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest checkpoint in ``directory``, or None."""
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


def rng_state() -> dict[str, Any]:
    """The global RNG states as tensors and plain values (loadable with weights_only)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    npy = state["numpy"]
    np.random.set_state(
        (
            npy["kind"],
            npy["keys"].numpy().astype(np.uint32),
            npy["pos"],
            npy["has_gauss"],
            npy["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            log.warning(
                "checkpoint has %d CUDA RNG states for %d devices; not restored",
                len(cuda),
                torch.cuda.device_count(),
            )


def save_checkpoint(
    path: str | Path,
    step: int,
    objects: Mapping[str, Stateful | None],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write one checkpoint file atomically (a killed job leaves no half file)."""
    payload = {
        "format": FORMAT_VERSION,
        "step": int(step),
        "state": {name: obj.state_dict() for name, obj in objects.items() if obj is not None},
        "rng": rng_state(),
        "extra": dict(extra or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_checkpoint(
    path: str | Path,
    objects: Mapping[str, Stateful | None],
    restore_rng: bool = True,
) -> tuple[int, dict[str, Any]]:
    """Load ``path`` into ``objects`` (same names as when saved); return (step, extra).

    A state that does not fit (another model config) raises ConfigError naming the folder to
    delete; the objects may then be partly loaded.
    """
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"cannot read checkpoint {path} ({exc}); delete it to start over") from exc
    state = payload["state"]
    wanted = {name for name, obj in objects.items() if obj is not None}
    missing = sorted(wanted - set(state))
    if missing:
        raise ConfigError(
            f"checkpoint {path} has no state for {missing} (it holds {sorted(state)}); "
            f"it was made by another training set-up: delete {Path(path).parent} to start over"
        )
    for name in sorted(wanted):
        try:
            objects[name].load_state_dict(state[name])
        except (RuntimeError, ValueError, KeyError, IndexError) as exc:
            raise ConfigError(
                f"checkpoint {path} does not fit '{name}' ({str(exc).splitlines()[0]}); it was "
                f"made with another model config: restore that config or delete "
                f"{Path(path).parent} to start over"
            ) from exc
    if restore_rng:
        set_rng_state(payload["rng"])
    return int(payload["step"]), dict(payload["extra"])


class Checkpointer:
    """Saves and restores a fixed set of named stateful objects in one folder."""

    def __init__(self, directory: str | Path, keep: int = 2, **objects: Stateful | None):
        if keep < 1:
            raise ValueError("keep must be >= 1")
        self.directory = Path(directory)
        self.keep = keep
        self.objects = objects

    def save(self, step: int, extra: Mapping[str, Any] | None = None) -> Path:
        path = save_checkpoint(checkpoint_path(self.directory, step), step, self.objects, extra)
        for _, old in list_checkpoints(self.directory)[: -self.keep]:
            old.unlink(missing_ok=True)
        log.debug("saved checkpoint %s", path)
        return path

    def restore_latest(self) -> tuple[int, dict[str, Any]] | None:
        """Load the newest checkpoint and log 'resuming from step S'; None if there is none."""
        path = latest_checkpoint(self.directory)
        if path is None:
            return None
        step, extra = load_checkpoint(path, self.objects)
        log.info("resuming from step %d (%s)", step, path)
        return step, extra


def peek_extra(path: str | Path) -> dict[str, Any]:
    """The extra state of a checkpoint file, without restoring anything."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    return dict(payload["extra"])


def set_aside(directory: str | Path, reason: str) -> Path | None:
    """Rename a checkpoint folder to ``<name>.stale-N`` so a fresh run starts; returns the new path.

    Used when the newest checkpoint was made with settings that change the result: resuming
    from it would mix two runs, deleting it would lose work somebody may want back.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return None
    n = 1
    while directory.with_name(f"{directory.name}.stale-{n}").exists():
        n += 1
    target = directory.with_name(f"{directory.name}.stale-{n}")
    directory.rename(target)
    log.warning("checkpoints in %s set aside as %s: %s", directory, target, reason)
    return target
