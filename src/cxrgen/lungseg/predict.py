"""Lung masks of any store from a trained segmenter, and their Dice where true masks exist.

:func:`predict_lung_masks` labels every row of a store (0 background, 1 right lung, 2 left
lung, on the store's grid; images of another size are resized to the model's and the logits
back). :func:`write_predicted_masks` writes them to a folder of their own, never into the
store: ``lung_masks.npy`` (row i = store row i), ``provenance.json``, ``dice.parquet`` (per
image) and ``dice_summary.parquet`` (mean Dice per lung with patient-bootstrap 95% intervals)
against the store's lung masks (the phantoms' ground truth, COVID-QU-Ex's masks), written
empty with their columns where the store has none. The true masks are read only to score.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from cxrgen import io, provenance
from cxrgen.config import check
from cxrgen.data.store import IMAGES, LUNG_MASKS, array_path, read_index, unit_rows
from cxrgen.devices import resolve_device
from cxrgen.evaluation import bootstrap
from cxrgen.lungseg.model import load_lungseg
from cxrgen.lungseg.sides import LEFT, RIGHT, split_sides_all

log = logging.getLogger(__name__)

DICE_COLUMNS = ("dice_right", "dice_left", "dice_mean", "dice_lungs")
SUMMARY_COLUMNS = ("metric", "value", "ci_low", "ci_high", "n_images", "n_patients")


@torch.no_grad()
def predict_rows(
    model: nn.Module, store_dir: str | Path, rows: np.ndarray, batch_size: int = 64
) -> np.ndarray:
    """uint8 labels (n, H, W) of store rows ``rows`` on the store's grid (on the model's
    device)."""
    device = next(model.parameters()).device
    images = np.load(array_path(store_dir, IMAGES), mmap_mode="r")
    size = model.config["sample_size"]
    size = (size, size) if isinstance(size, int) else tuple(size)
    rows = np.asarray(rows, dtype=np.int64)
    out = np.zeros((len(rows), *images.shape[1:]), np.uint8)
    for start in range(0, len(rows), batch_size):
        x = torch.from_numpy(unit_rows(images, rows[start : start + batch_size]))[:, None]
        x = x.to(device) * 2 - 1
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        logits = model(x).float()
        if tuple(logits.shape[-2:]) != tuple(images.shape[1:]):
            logits = F.interpolate(logits, size=images.shape[1:], mode="bilinear",
                                   align_corners=False)  # fmt: skip
        out[start : start + len(x)] = logits.argmax(1).to(torch.uint8).cpu().numpy()
    return out


def predict_lung_masks(
    model_dir: str | Path, store_dir: str | Path, device: str = "auto", batch_size: int = 64
) -> np.ndarray:
    """Predicted lung labels (N, H, W) uint8 of every row of the store."""
    n = len(read_index(store_dir))
    model = load_lungseg(model_dir, resolve_device(device))
    return predict_rows(model, store_dir, np.arange(n), batch_size)


def _dice(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dice per image of boolean (n, H, W) masks; 1 where both are empty."""
    inter = (a & b).reshape(len(a), -1).sum(1)
    total = a.reshape(len(a), -1).sum(1) + b.reshape(len(b), -1).sum(1)
    return np.where(total > 0, 2 * inter / np.maximum(total, 1), 1.0)


def dice_table(predicted: np.ndarray, truth: np.ndarray) -> pd.DataFrame:
    """Per image: Dice of the right lung, the left lung, their mean, and both lungs as one."""
    check(predicted.shape == truth.shape, f"masks {predicted.shape} vs {truth.shape}")
    right = _dice(predicted == RIGHT, truth == RIGHT)
    left = _dice(predicted == LEFT, truth == LEFT)
    lungs = _dice(predicted > 0, truth > 0)
    values = (right, left, (right + left) / 2, lungs)
    return pd.DataFrame(dict(zip(DICE_COLUMNS, values, strict=True)))


def dice_summary(table: pd.DataFrame, patient_ids, n_boot: int = 1000, seed: int = 0):
    """Mean of each Dice column with a patient-bootstrap 95% interval (long table)."""
    weights = bootstrap.resample_weights(patient_ids, np.zeros(len(table)), n_boot, seed)
    rows = []
    for column in DICE_COLUMNS:
        values = table[column].to_numpy(np.float64)
        low, high = bootstrap.interval(bootstrap.weighted_mean(values, weights))
        rows.append(dict(metric=column, value=float(values.mean()), ci_low=low, ci_high=high,
                         n_images=len(values), n_patients=len(set(patient_ids))))  # fmt: skip
    return pd.DataFrame(rows)


def write_predicted_masks(
    model_dir: str | Path,
    store_dir: str | Path,
    out_dir: str | Path,
    device: str = "auto",
    batch_size: int = 64,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Write the masks and their Dice (empty without true masks); return the Dice summary."""
    store_dir, out_dir = Path(store_dir), Path(out_dir)
    predicted = predict_lung_masks(model_dir, store_dir, device, batch_size)
    io.save_npy(array_path(out_dir, LUNG_MASKS), predicted)
    truth_path = array_path(store_dir, LUNG_MASKS)
    table = pd.DataFrame(columns=["row", "image_id", "patient_id", *DICE_COLUMNS])
    summary = pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    if truth_path.exists():
        index = read_index(store_dir)
        truth = split_sides_all(np.load(truth_path, mmap_mode="r"), np.arange(len(index)))
        table = dice_table(predicted, truth)
        table.insert(0, "row", np.arange(len(index)))
        table.insert(1, "image_id", index["image_id"].astype(str).to_numpy())
        patients = index["patient_id"] if "patient_id" in index else index["image_id"]
        table.insert(2, "patient_id", patients.astype(str).to_numpy())
        summary = dice_summary(table, table["patient_id"].to_numpy(), n_boot, seed)
        log.info("Dice against the store's lung masks:\n%s", summary.to_string(index=False))
    io.write_parquet(out_dir / "dice.parquet", table)
    io.write_parquet(out_dir / "dice_summary.parquet", summary)
    provenance.write(
        out_dir / "provenance.json", "predict_lung_masks", None, model=str(model_dir),
        store=str(store_dir), images=len(predicted), scored=truth_path.exists(),
    )  # fmt: skip
    log.info("wrote %d predicted lung masks to %s", len(predicted), out_dir)
    return summary
