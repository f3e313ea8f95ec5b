"""Train the noise-aware classifier: ``train_classifier(store, split, out, cfg, scheduler_dir=)``.

It learns p(y | x_t, t) on images noised by the DDPM forward process at uniform t. The noise
schedule is always the diffusion model's: ``scheduler_dir`` (the diffusion model's
``scheduler/`` folder) is required and used as is, and a copy is saved in ``out_dir/scheduler``
(the guidance stage checks the two agree with
:func:`cxrgen.diffusion.model.check_same_schedule`). The classifier config has no schedule keys.

Outputs in ``out_dir``: ``model.safetensors`` + ``config.json`` (:func:`load_classifier`),
``scheduler/``, ``validation.parquet`` + ``validation.png`` (per timestep bin),
``loss.parquet`` + ``loss.png``, ``classes.json``, ``provenance.json``, ``checkpoints/``.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from torch import nn

from cxrgen.classifier.config import ClassifierTrainConfig
from cxrgen.classifier.model import NoiseAwareClassifier, save_classifier
from cxrgen.classifier.validate import validate_per_timestep, write_validation
from cxrgen.data.store import load_split
from cxrgen.diffusion.model import check_unet_geometry
from cxrgen.errors import DataError
from cxrgen.io import atomic_dir
from cxrgen.training.data import XrayDataset, require_every_class
from cxrgen.training.loop import seeded, train_and_write
from cxrgen.training.step import StepContext, single_loss

log = logging.getLogger(__name__)


def classifier_loss(
    model: nn.Module,
    x0: torch.Tensor,
    labels: torch.Tensor,
    ctx: StepContext,
    *,
    scheduler: DDPMScheduler,
    max_depth: float = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Cross-entropy of p(y | x_t, t) at t uniform in [0, L]; also the batch accuracy."""
    t = ctx.randint(timestep_limit(scheduler, max_depth))
    noise = ctx.randn(*x0.shape[1:]).to(x0.dtype)
    logits = model(scheduler.add_noise(x0, noise, t), t).float()
    accuracy = (logits.argmax(1) == labels).float().mean().detach()
    return F.cross_entropy(logits, labels), {"accuracy": accuracy}


def timestep_limit(scheduler: DDPMScheduler, max_depth: float) -> int:
    """The number of timesteps the classifier trains and is validated on: L + 1, L = depth*T."""
    total = int(scheduler.config.num_train_timesteps)
    return min(total, round(max_depth * total) + 1)


def noise_schedule(scheduler_dir: str | Path) -> DDPMScheduler:
    """The diffusion model's saved noise schedule (its ``scheduler/`` folder)."""
    if not (Path(scheduler_dir) / "scheduler_config.json").exists():
        raise DataError(f"no scheduler_config.json in {scheduler_dir}: train the diffusion model")
    return DDPMScheduler.from_pretrained(scheduler_dir)


def train_classifier(
    store_dir: str | Path,
    split_dir: str | Path,
    out_dir: str | Path,
    cfg: ClassifierTrainConfig,
    progress: bool = True,
    *,
    scheduler_dir: str | Path,
    checkpoint_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Train on the 'train' split, validate per timestep bin on ``cfg.valid_split``.

    ``scheduler_dir`` is the diffusion model's ``scheduler/``: the only source of the noise
    schedule (timesteps and betas).

    Returns the validation table. Re-running resumes from the newest checkpoint in
    ``checkpoint_dir`` (default ``out_dir/checkpoints``).
    """
    store_dir, split_dir, out_dir = Path(store_dir), Path(split_dir), Path(out_dir)
    checkpoint_dir = out_dir / "checkpoints" if checkpoint_dir is None else Path(checkpoint_dir)
    data = load_split(store_dir, split_dir, "train")
    require_every_class(data)
    valid = load_split(store_dir, split_dir, cfg.valid_split)
    check_unet_geometry(data.height, data.width, cfg.block_out_channels, cfg.attention_resolutions)
    scheduler = noise_schedule(scheduler_dir)
    k = data.num_classes

    def build():
        return NoiseAwareClassifier(
            num_classes=k,
            sample_size=data.height if data.height == data.width else (data.height, data.width),
            block_out_channels=cfg.block_out_channels,
            layers_per_block=cfg.layers_per_block,
            attention_resolutions=cfg.attention_resolutions,
            mid_attention=cfg.mid_attention,
            attention_head_dim=cfg.attention_head_dim,
            norm_num_groups=cfg.norm_num_groups,
            dropout=cfg.dropout,
            num_train_timesteps=scheduler.config.num_train_timesteps,
        )

    model = seeded(cfg.seed, build)
    log.info(
        "classifier: %.2fM parameters, %d classes, %dx%d",
        sum(p.numel() for p in model.parameters()) / 1e6,
        k,
        data.height,
        data.width,
    )
    tables: list[pd.DataFrame] = []

    def save(outcome) -> dict:
        table = validate_per_timestep(
            outcome.model, scheduler, XrayDataset(valid), cfg.valid_bins, cfg.seed,
            cfg.valid_batch_size, timestep_limit(scheduler, cfg.max_depth),
        )  # fmt: skip
        log.info("validation per timestep bin:\n%s", table.to_string(index=False))
        save_classifier(outcome.model, out_dir)
        with atomic_dir(out_dir / "scheduler") as tmp:
            scheduler.save_pretrained(tmp)
        write_validation(out_dir, table, k)
        tables.append(table)
        return {"n_valid": len(valid)}

    train_and_write(
        single_loss(
            model,
            functools.partial(classifier_loss, scheduler=scheduler, max_depth=cfg.max_depth),
        ),
        data,
        out_dir,
        cfg,
        stage="train_classifier",
        title="noise-aware classifier (cross-entropy)",
        save=save,
        checkpoint_dir=checkpoint_dir,
        provenance_extra=dict(
            store=str(store_dir), split=str(split_dir), noise_schedule_from=str(scheduler_dir)
        ),
        progress=progress,
    )
    return tables[0] if tables else pd.DataFrame()  # only the main process validates
