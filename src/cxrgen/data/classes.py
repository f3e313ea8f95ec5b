"""The class-name <-> label map, persisted as one JSON file (never a directory listing order)."""

from __future__ import annotations

from pathlib import Path

from cxrgen import io


def write_classes(path: str | Path, names: list[str]) -> None:
    """Write ``{"names": [...], "index": {name: i}}``; label i is ``names[i]``."""
    io.write_json(path, {"names": list(names), "index": {c: i for i, c in enumerate(names)}})


def read_classes(path: str | Path) -> list[str]:
    """Class names in label order."""
    return list(io.read_json(path)["names"])
