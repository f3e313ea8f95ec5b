"""How an artefact was made: resolved config, code version, key package versions."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from cxrgen import io

KEY_PACKAGES = (
    "cxrgen",
    "torch",
    "diffusers",
    "accelerate",
    "numpy",
    "pandas",
    "pyarrow",
    "pydicom",
    "pylibjpeg",
    "scikit-image",
    "scikit-learn",
)


def package_versions(names=KEY_PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def code_version() -> str | None:
    """The git commit of the source tree (with '+dirty' when modified), if it is a checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "src"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("+dirty" if dirty else "")


def describe(stage: str, config: Any = None, **extra: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    return {
        "stage": stage,
        "config": config,
        "code_version": code_version(),
        "packages": package_versions(),
        "python": platform.python_version(),
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "host_cpus": os.cpu_count(),
        **extra,
    }


def write(path: str | os.PathLike, stage: str, config: Any = None, **extra: Any) -> None:
    """Write the provenance sidecar (``provenance.json`` by convention) for one artefact folder."""
    io.write_json(path, describe(stage, config, **extra))
