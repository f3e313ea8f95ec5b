"""Train the lung segmenter: ``train_lungseg(store, split, out, cfg)``.

The training images are the data set's 'train' split with lung masks in the store
(``lung_masks.npy``: COVID-QU-Ex's ``lung masks/`` folders or the phantoms' ground truth);
binary masks are split into right / left lung first (:func:`cxrgen.lungseg.sides.split_sides`)
and written, one row per training image, to a temporary ``targets.npy`` (in ``out_dir``, removed
after training), which the one training loop reads as per-pixel targets
(:class:`~cxrgen.data.store.SplitImages` ``targets_path``), moved by the same geometric
augmentation as the images.

Outputs in ``out_dir``: ``model.safetensors`` + ``config.json`` (:func:`load_lungseg`),
``labels.json`` (the label names), ``validation.parquet`` (Dice per lung on ``cfg.valid_split``
against the data set's own masks), ``loss.parquet`` + ``loss.png``, ``classes.json``,
``provenance.json``; ``checkpoints/`` unless ``checkpoint_dir`` is given.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from cxrgen import io
from cxrgen.data.store import LUNG_MASKS, array_path, load_split
from cxrgen.errors import DataError
from cxrgen.lungseg.config import LungSegTrainConfig
from cxrgen.lungseg.model import LungSegNet, save_lungseg
from cxrgen.lungseg.predict import DICE_COLUMNS, dice_table, predict_rows
from cxrgen.lungseg.sides import LABELS, split_sides_all
from cxrgen.training.loop import seeded, train_and_write
from cxrgen.training.step import StepContext, single_loss

log = logging.getLogger(__name__)

TARGETS_FILE = "targets.npy"


def soft_dice(logits: torch.Tensor, target: torch.Tensor, labels=(1, 2)) -> torch.Tensor:
    """Per-image mean over ``labels`` of the soft Dice of softmax(logits) vs. the target."""
    p = torch.softmax(logits.float(), dim=1)
    dice = []
    for k in labels:
        t = (target == k).float()
        inter = (p[:, k] * t).sum((1, 2))
        dice.append((2 * inter + 1) / (p[:, k].sum((1, 2)) + t.sum((1, 2)) + 1))
    return torch.stack(dice, 1).mean(1)


def segmentation_loss(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, ctx: StepContext, *, dice_weight: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Cross-entropy per pixel + ``dice_weight`` * (1 - soft Dice of the lungs)."""
    logits = model(x).float()
    dice = soft_dice(logits, target).mean()
    loss = F.cross_entropy(logits, target) + dice_weight * (1 - dice)
    return loss, {"soft_dice": dice.detach()}


def lung_targets(store_dir: Path, rows: np.ndarray) -> np.ndarray:
    """The right / left lung labels (n, H, W) of store rows ``rows`` (DataError: no masks)."""
    path = array_path(store_dir, LUNG_MASKS)
    if not path.exists():
        raise DataError(
            f"the store {store_dir} has no lung masks ({path.name}); the lung segmenter trains "
            "on a data set that ships them (COVID-QU-Ex 'lung masks/' folders, the phantoms)"
        )
    targets = split_sides_all(np.load(path, mmap_mode="r"), rows)
    empty = int((targets.reshape(len(targets), -1).max(1) == 0).sum())
    if empty == len(targets):
        raise DataError(f"every lung mask of the training images in {path} is empty")
    if empty:
        log.warning("%d of %d training images have an empty lung mask", empty, len(targets))
    return targets


def train_lungseg(
    store_dir: str | Path,
    split_dir: str | Path,
    out_dir: str | Path,
    cfg: LungSegTrainConfig,
    progress: bool = True,
    *,
    checkpoint_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Train on the 'train' split's lung masks; return the validation Dice table (or empty).

    Re-running resumes from the newest checkpoint in ``checkpoint_dir``.
    """
    store_dir, split_dir, out_dir = Path(store_dir), Path(split_dir), Path(out_dir)
    checkpoint_dir = out_dir / "checkpoints" if checkpoint_dir is None else Path(checkpoint_dir)
    data = load_split(store_dir, split_dir, "train")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".targets-", dir=out_dir) as tmp:
        targets_path = Path(tmp) / TARGETS_FILE
        io.save_npy(targets_path, lung_targets(store_dir, data.rows))
        data = dataclasses.replace(data, targets_path=targets_path)
        return _train(data, store_dir, split_dir, out_dir, cfg, progress, checkpoint_dir)


def _train(data, store_dir, split_dir, out_dir, cfg, progress, checkpoint_dir) -> pd.DataFrame:
    size = data.height if data.height == data.width else (data.height, data.width)

    def build():
        return LungSegNet(
            sample_size=size,
            block_out_channels=cfg.block_out_channels,
            layers_per_block=cfg.layers_per_block,
            norm_num_groups=cfg.norm_num_groups,
            dropout=cfg.dropout,
        )

    model = seeded(cfg.seed, build)
    log.info(
        "lung segmenter: %.2fM parameters, %dx%d, %d training images",
        sum(p.numel() for p in model.parameters()) / 1e6, data.height, data.width, len(data),
    )  # fmt: skip
    tables: list[pd.DataFrame] = []

    def save(outcome) -> dict:
        save_lungseg(outcome.model, out_dir)
        io.write_json(out_dir / "labels.json", list(LABELS))
        table = validate(outcome.model, store_dir, split_dir, cfg)
        io.write_parquet(out_dir / "validation.parquet", table)
        tables.append(table)
        means = {f"valid_dice_{k}": float(v) for k, v in table.mean(numeric_only=True).items()
                 if k.startswith("dice")}  # fmt: skip
        return {"n_train_masks": len(data), "labels": list(LABELS), **means}

    def loss_fn(m, x, y, ctx):
        return segmentation_loss(m, x, y, ctx, dice_weight=cfg.dice_weight)

    train_and_write(
        single_loss(model, loss_fn),
        data,
        out_dir,
        cfg,
        stage="train_lungseg",
        title="lung segmenter (cross-entropy + soft Dice)",
        save=save,
        checkpoint_dir=checkpoint_dir,
        provenance_extra=dict(store=str(store_dir), split=str(split_dir)),
        progress=progress,
    )
    return tables[0] if tables else pd.DataFrame()


def validate(
    model: nn.Module, store_dir: Path, split_dir: Path, cfg: LungSegTrainConfig
) -> pd.DataFrame:
    """Dice per image and lung on ``cfg.valid_split`` against the store's own (sided) masks."""
    empty = pd.DataFrame(columns=["row", *DICE_COLUMNS])
    if not cfg.valid_split:
        return empty
    try:
        valid = load_split(store_dir, split_dir, cfg.valid_split)
    except DataError as exc:
        log.warning("no validation: %s", exc)
        return empty
    predicted = predict_rows(model, store_dir, valid.rows)
    table = dice_table(predicted, lung_targets(store_dir, valid.rows))
    table.insert(0, "row", valid.rows)
    log.info("validation Dice on %s (%d images): %s", cfg.valid_split, len(table),
             table.filter(like="dice").mean().round(4).to_dict())  # fmt: skip
    return table
