"""Validation of the noise-aware classifier per timestep bin: accuracy and AUROC.

The timesteps [0, T) are cut into equal bins; every validation image is noised once per bin,
at a timestep drawn uniformly in the bin with noise seeded by (seed, bin, image), so the
table does not depend on the evaluation batch size.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from sklearn.metrics import roc_auc_score
from torch import nn

from cxrgen import io
from cxrgen.plotting import pyplot
from cxrgen.training.data import XrayDataset
from cxrgen.training.seeding import Purpose, generator

log = logging.getLogger(__name__)


def auroc(labels: np.ndarray, probs: np.ndarray) -> float:
    """Binary AUROC of class 1, or macro one-vs-rest for K > 2; NaN if a class is absent."""
    k = probs.shape[1]
    if len(np.unique(labels)) < k:
        return float("nan")
    if k == 2:
        return float(roc_auc_score(labels, probs[:, 1]))
    return float(
        roc_auc_score(labels, probs, multi_class="ovr", average="macro", labels=np.arange(k))
    )


def timestep_bins(num_train_timesteps: int, n_bins: int) -> np.ndarray:
    """Bin edges: bin b holds timesteps edges[b] <= t < edges[b+1]."""
    return np.linspace(0, num_train_timesteps, n_bins + 1).round().astype(np.int64)


@torch.no_grad()
def validate_per_timestep(
    model: nn.Module,
    scheduler: DDPMScheduler,
    dataset: XrayDataset,
    n_bins: int,
    seed: int,
    batch_size: int = 64,
    limit: int | None = None,
) -> pd.DataFrame:
    """One row per timestep bin of [0, limit) (default all T): t_lo, t_hi (exclusive), t_mid,
    n, accuracy, auroc, loss."""
    device = next(model.parameters()).device
    model.eval()
    edges = timestep_bins(limit or scheduler.config.num_train_timesteps, n_bins)
    n = len(dataset)
    k = dataset.data.num_classes
    probs = np.zeros((n_bins, n, k), np.float64)
    labels = np.array(dataset.data.labels, dtype=np.int64)
    for start in range(0, n, batch_size):
        index = range(start, min(start + batch_size, n))
        x0 = torch.stack([dataset[i][0] for i in index]).to(device)
        for b in range(n_bins):
            gens = [generator(seed, Purpose.VALIDATE, b, i) for i in index]
            t = torch.stack(
                [torch.randint(int(edges[b]), int(edges[b + 1]), (), generator=g) for g in gens]
            ).to(device)
            noise = torch.stack([torch.randn(x0.shape[1:], generator=g) for g in gens]).to(device)
            x_t = scheduler.add_noise(x0, noise, t)
            logits = model(x_t, t).float()
            probs[b, index.start : index.stop] = torch.softmax(logits, -1).cpu().numpy()
    rows = []
    for b in range(n_bins):
        p = probs[b]
        nll = F.nll_loss(torch.from_numpy(np.log(np.clip(p, 1e-12, 1))), torch.from_numpy(labels))
        rows.append(
            {
                "t_bin": b,
                "t_lo": int(edges[b]),
                "t_hi": int(edges[b + 1]),
                "t_mid": float((edges[b] + edges[b + 1] - 1) / 2),
                "n": n,
                "accuracy": float((p.argmax(1) == labels).mean()),
                "auroc": auroc(labels, p),
                "loss": float(nll),
            }
        )
    return pd.DataFrame(rows)


def write_validation(out_dir: str | Path, table: pd.DataFrame, num_classes: int) -> None:
    """``validation.parquet`` and ``validation.png`` (accuracy and AUROC against t)."""
    plt = pyplot()

    out_dir = Path(out_dir)
    io.write_parquet(out_dir / "validation.parquet", table)
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    ax.plot(table["t_mid"], table["accuracy"], "o-", label="accuracy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ax.plot(table["t_mid"], table["auroc"], "s-", label="AUROC")
    ax.axhline(1 / num_classes, color="grey", ls=":", label="chance accuracy")
    ax.axhline(0.5, color="grey", ls="--", lw=0.8, label="chance AUROC")
    ax.set_xlabel("diffusion timestep t (bin centre)")
    ax.set_ylabel("validation score")
    ax.set_ylim(0, 1.02)
    ax.set_title("noise-aware classifier on the validation split")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with io.atomic_path(out_dir / "validation.png") as tmp:
        fig.savefig(tmp)
    plt.close(fig)
