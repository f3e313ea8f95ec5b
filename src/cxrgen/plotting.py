"""Every picture a stage writes goes through here: the headless pyplot, the loss curve of any
trained model, plain and labelled image grids (each written atomically)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cxrgen import io


def pyplot():
    """matplotlib.pyplot on the Agg backend (jobs have no display), imported on first use."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def loss_panels(history: pd.DataFrame) -> dict[str, list[str]]:
    """The loss table's columns grouped into panels: the loss, discriminator terms, generator
    terms, the learning rate, then the rest (accuracy, decaying loss weights)."""
    columns = [c for c in history.columns if c not in ("step", "images_per_s")]
    groups = {
        "loss": [c for c in columns if c == "loss"],
        "discriminator": [c for c in columns if c.startswith("d_")],
        "generator": [c for c in columns if c.startswith("g_")],
        "learning rate": [c for c in columns if c == "lr"],
    }
    used = {c for cols in groups.values() for c in cols}
    groups["other"] = [c for c in columns if c not in used]
    return {k: v for k, v in groups.items() if v}


def write_loss(out_dir: str | Path, history: pd.DataFrame, title: str) -> None:
    """``loss.parquet`` (step, loss terms, lr, images_per_s, ...) and ``loss.png``: one panel
    per group of :func:`loss_panels`, on a log scale where every value is positive."""
    out_dir = Path(out_dir)
    io.write_parquet(out_dir / "loss.parquet", history)
    groups = loss_panels(history)
    plt = pyplot()
    fig, axes = plt.subplots(
        max(1, len(groups)), 1, figsize=(8, 2.4 * max(1, len(groups))), dpi=110, squeeze=False
    )
    for ax, (name, columns) in zip(axes[:, 0], groups.items(), strict=False):
        for col in columns:
            ax.plot(history["step"], history[col], lw=1.0, label=col)
        if name in ("loss", "learning rate") and (history[columns] > 0).all(axis=None):
            ax.set_yscale("log")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    axes[-1, 0].set_xlabel("optimizer step")
    axes[0, 0].set_title(title)
    fig.tight_layout()
    with io.atomic_path(out_dir / "loss.png") as tmp:
        fig.savefig(tmp)
    plt.close(fig)


def write_image_grid(path: str | Path, images: np.ndarray) -> None:
    """Write a (rows, cols, H, W) array in [0, 1] as a PNG of exactly rows*H x cols*W pixels."""
    rows, cols, h, w = images.shape
    grid = np.clip(images, 0, 1).transpose(0, 2, 1, 3).reshape(rows * h, cols * w)
    plt = pyplot()
    with io.atomic_path(path) as tmp:
        plt.imsave(tmp, grid, cmap="gray", vmin=0.0, vmax=1.0)


@dataclass
class Panel:
    """A titled block of a labelled grid: images (rows, cols, H, W) in [0, 1], NaN = empty."""

    title: str
    images: np.ndarray
    row_labels: Sequence[str]
    col_labels: Sequence[str]


def write_labelled_grid(path: str | Path, panels: Sequence[Panel], title: str = "") -> None:
    """A PNG of stacked panels, each image its own axes, columns and rows labelled."""
    plt = pyplot()
    h, w = panels[0].images.shape[-2:]
    cell = 1.5
    cols = max(p.images.shape[1] for p in panels)
    rows = [p.images.shape[0] + 0.5 for p in panels]
    fig = plt.figure(
        figsize=(cols * cell * w / max(h, w) + 1.0, sum(rows) * cell * h / max(h, w) + 0.6),
        dpi=int(min(200, max(100, math.ceil(max(h, w) / cell)))),
        layout="constrained",
    )
    if title:
        fig.suptitle(title, fontsize=11)
    subfigs = fig.subfigures(len(panels), 1, height_ratios=rows, squeeze=False)[:, 0]
    for sub, panel in zip(subfigs, panels, strict=True):
        sub.suptitle(panel.title, fontsize=10)
        n_rows, n_cols = panel.images.shape[:2]
        axes = sub.subplots(n_rows, n_cols, squeeze=False)
        for r in range(n_rows):
            for c in range(n_cols):
                ax = axes[r, c]
                ax.set_xticks([])
                ax.set_yticks([])
                image = panel.images[r, c]
                if np.isnan(image).all():
                    ax.set_frame_on(False)
                else:
                    ax.imshow(np.clip(image, 0, 1), cmap="gray", vmin=0, vmax=1)
                if r == 0:
                    ax.set_title(panel.col_labels[c], fontsize=8)
                if c == 0:
                    ax.set_ylabel(panel.row_labels[r], fontsize=8)
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
