"""GAN outputs: networks as safetensors + config.json, the loss table and plot, labelled grids."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import safetensors.torch
from torch import nn

from cxrgen import io
from cxrgen.errors import DataError

CONFIG = "config.json"


def save_networks(out_dir: str | Path, nets: Mapping[str, nn.Module], config: dict) -> None:
    """``{name}.safetensors`` per network and ``config.json``, each written atomically."""
    out_dir = Path(out_dir)
    for name, net in nets.items():
        state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        with io.atomic_path(out_dir / f"{name}.safetensors") as tmp:
            safetensors.torch.save_file(state, tmp)
    io.write_json(out_dir / CONFIG, config)


def read_model_config(model_dir: str | Path, kind: str) -> dict[str, Any]:
    """The config.json of a saved GAN of ``kind`` ('stargan' or 'dcgan'); DataError if absent."""
    path = Path(model_dir) / CONFIG
    if not path.exists():
        raise DataError(f"no {kind} model in {model_dir} (missing {CONFIG}): train it first")
    config = io.read_json(path)
    if config.get("kind") != kind:
        raise DataError(f"{model_dir} holds a {config.get('kind')!r} model, not a {kind!r} one")
    return config


def load_weights(model_dir: str | Path, name: str, net: nn.Module) -> nn.Module:
    """Load ``{name}.safetensors`` into ``net``; eval mode, parameters frozen."""
    path = Path(model_dir) / f"{name}.safetensors"
    if not path.exists():
        raise DataError(f"missing {path}: the model folder is incomplete, train it again")
    net.load_state_dict(safetensors.torch.load_file(path, device="cpu"))
    return net.eval().requires_grad_(False)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def write_gan_loss(out_dir: str | Path, history: pd.DataFrame, title: str) -> None:
    """``loss.parquet`` and ``loss.png``: discriminator terms, generator terms, loss weights.

    Columns starting ``d_`` / ``g_`` are plotted in their panels; other non-bookkeeping columns
    (decaying loss weights) in a third.
    """
    out_dir = Path(out_dir)
    io.write_parquet(out_dir / "loss.parquet", history)
    plt = _pyplot()
    groups = {
        "discriminator": [c for c in history.columns if c.startswith("d_")],
        "generator": [c for c in history.columns if c.startswith("g_")],
    }
    groups["loss weights"] = [
        c
        for c in history.columns
        if c not in ("step", "images_per_s") and not c.startswith(("d_", "g_"))
    ]
    groups = {k: v for k, v in groups.items() if v}
    fig, axes = plt.subplots(
        len(groups) or 1, 1, figsize=(8.5, 2.6 * max(1, len(groups))), dpi=110, squeeze=False
    )
    for ax, (name, columns) in zip(axes[:, 0], groups.items(), strict=False):
        for col in columns:
            ax.plot(history["step"], history[col], lw=1.0, label=col)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    axes[-1, 0].set_xlabel("training step")
    axes[0, 0].set_title(title)
    fig.tight_layout()
    with io.atomic_path(out_dir / "loss.png") as tmp:
        fig.savefig(tmp)
    plt.close(fig)


@dataclass
class Panel:
    """A titled block of a labelled grid: images (rows, cols, H, W) in [0, 1], NaN = empty."""

    title: str
    images: np.ndarray
    row_labels: Sequence[str]
    col_labels: Sequence[str]


def write_labelled_grid(path: str | Path, panels: Sequence[Panel], title: str = "") -> None:
    """A PNG of stacked panels, each image its own axes, columns and rows labelled."""
    plt = _pyplot()
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
