"""Outputs every trainer writes: a folder written atomically, the loss table and its plot,
and image grids."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from cxrgen import io


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it replaces ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def write_loss(out_dir: str | Path, history: pd.DataFrame, title: str) -> None:
    """``loss.parquet`` (step, loss, lr, images_per_s, ...) and ``loss.png``."""
    out_dir = Path(out_dir)
    io.write_parquet(out_dir / "loss.parquet", history)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    if len(history):
        ax.plot(history["step"], history["loss"], color="C0", lw=1.2, label="training loss")
        if (history["loss"] > 0).all():
            ax.set_yscale("log")
        lr_ax = ax.twinx()
        lr_ax.plot(history["step"], history["lr"], color="C1", lw=0.8, ls="--", label="lr")
        lr_ax.set_ylabel("learning rate", color="C1")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (mean over logging interval)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with io.atomic_path(out_dir / "loss.png") as tmp:
        fig.savefig(tmp)
    plt.close(fig)


def write_image_grid(path: str | Path, images: np.ndarray) -> None:
    """Write a (rows, cols, H, W) array in [0, 1] as a PNG of exactly rows*H x cols*W pixels."""
    rows, cols, h, w = images.shape
    grid = np.clip(images, 0, 1).transpose(0, 2, 1, 3).reshape(rows * h, cols * w)
    plt = _pyplot()
    with io.atomic_path(path) as tmp:
        plt.imsave(tmp, grid, cmap="gray", vmin=0.0, vmax=1.0)
