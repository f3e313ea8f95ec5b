"""Train the noise-aware classifier: ``train_classifier(store, split, out, cfg)``.

It learns p(y | x_t, t) on images noised by the DDPM forward process at uniform t. The noise
schedule must be the diffusion model's: pass ``scheduler_dir`` (the diffusion model's
``scheduler/`` folder) and it is used as is; without it the schedule is built from this
config's ``num_train_timesteps`` / ``beta_schedule`` (which must then match the diffusion
config; the guidance stage checks with :func:`cxrgen.diffusion.model.check_same_schedule`
against the copy saved in ``scheduler/``). Without the dependency both models can train in
parallel.

Outputs in ``out_dir``: ``model.safetensors`` + ``config.json`` (:func:`load_classifier`),
``scheduler/``, ``validation.parquet`` + ``validation.png`` (per timestep bin),
``loss.parquet`` + ``loss.png``, ``classes.json``, ``provenance.json``, ``checkpoints/``.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from torch import nn

from cxrgen import provenance
from cxrgen.classifier.model import NoiseAwareClassifier, save_classifier
from cxrgen.classifier.validate import validate_per_timestep, write_validation
from cxrgen.config import check
from cxrgen.data.classes import write_classes
from cxrgen.diffusion.model import (
    BETA_SCHEDULES,
    build_scheduler,
    check_unet_geometry,
    check_unet_shape,
)
from cxrgen.errors import DataError
from cxrgen.training.artifacts import atomic_dir, write_loss
from cxrgen.training.data import XrayDataset, load_split, require_every_class
from cxrgen.training.loop import StepContext, run_training, seeded
from cxrgen.training.loop_config import TrainLoopConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassifierTrainConfig(TrainLoopConfig):
    """Noise-aware classifier training (shared keys are documented on TrainLoopConfig).

    block_out_channels / layers_per_block / attention_resolutions / mid_attention /
    attention_head_dim / norm_num_groups / dropout: the UNet-encoder architecture.
    num_train_timesteps / beta_schedule: the noise schedule when no diffusion ``scheduler/``
        folder is given (must equal the diffusion model's).
    max_depth: training timesteps are drawn from [0, L], L = round(max_depth * T): guidance
        only queries t <= the inversion depth, so the pipeline sets it to invert.depth.
    valid_split: split name evaluated after training. valid_bins: timestep bins of [0, L]
        in the validation table. valid_batch_size: evaluation batch.
    """

    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 0.05
    max_steps: int = 400
    warmup_steps: int = 40
    checkpoint_every: int = 100
    balanced_sampling: bool = True
    block_out_channels: tuple[int, ...] = (16, 32, 64, 128)
    layers_per_block: int = 1
    attention_resolutions: tuple[int, ...] = ()
    mid_attention: bool = True
    attention_head_dim: int = 16
    norm_num_groups: int = 8
    dropout: float = 0.0
    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"
    max_depth: float = 1.0
    valid_split: str = "calibration"
    valid_bins: int = 10
    valid_batch_size: int = 64

    def __post_init__(self):
        super().__post_init__()
        check_unet_shape(self)
        check(0 < self.max_depth <= 1, f"max_depth must be in (0, 1], got {self.max_depth}")
        check(self.valid_bins >= 1, "valid_bins must be >= 1")
        check(self.valid_batch_size >= 1, "valid_batch_size must be >= 1")


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


def noise_schedule(cfg: ClassifierTrainConfig, scheduler_dir: str | Path | None) -> DDPMScheduler:
    if scheduler_dir is None:
        return build_scheduler(cfg.num_train_timesteps, cfg.beta_schedule)
    if not (Path(scheduler_dir) / "scheduler_config.json").exists():
        raise DataError(f"no scheduler_config.json in {scheduler_dir}: train the diffusion model")
    scheduler = DDPMScheduler.from_pretrained(scheduler_dir)
    if (scheduler.config.num_train_timesteps, scheduler.config.beta_schedule) != (
        cfg.num_train_timesteps,
        BETA_SCHEDULES[cfg.beta_schedule],
    ):
        log.warning(
            "using the noise schedule of %s (%d steps, %s); the classifier config's "
            "num_train_timesteps / beta_schedule are ignored",
            scheduler_dir,
            scheduler.config.num_train_timesteps,
            scheduler.config.beta_schedule,
        )
    return scheduler


def train_classifier(
    store_dir: str | Path,
    split_dir: str | Path,
    out_dir: str | Path,
    cfg: ClassifierTrainConfig,
    progress: bool = True,
    scheduler_dir: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Train on the 'train' split, validate per timestep bin on ``cfg.valid_split``.

    Returns the validation table. Re-running resumes from the newest checkpoint in
    ``checkpoint_dir`` (default ``out_dir/checkpoints``).
    """
    store_dir, split_dir, out_dir = Path(store_dir), Path(split_dir), Path(out_dir)
    checkpoint_dir = out_dir / "checkpoints" if checkpoint_dir is None else Path(checkpoint_dir)
    data = load_split(store_dir, split_dir, "train")
    require_every_class(data)
    valid = load_split(store_dir, split_dir, cfg.valid_split)
    check_unet_geometry(data.height, data.width, cfg.block_out_channels, cfg.attention_resolutions)
    scheduler = noise_schedule(cfg, scheduler_dir)
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
    outcome = run_training(
        model,
        functools.partial(classifier_loss, scheduler=scheduler, max_depth=cfg.max_depth),
        data,
        checkpoint_dir,
        cfg,
        stage="train_classifier",
        progress=progress,
    )
    if not outcome.accelerator.is_main_process:
        return pd.DataFrame()
    table = validate_per_timestep(
        outcome.model, scheduler, XrayDataset(valid), cfg.valid_bins, cfg.seed,
        cfg.valid_batch_size, timestep_limit(scheduler, cfg.max_depth),
    )  # fmt: skip
    log.info("validation per timestep bin:\n%s", table.to_string(index=False))
    save_classifier(outcome.model, out_dir)
    with atomic_dir(out_dir / "scheduler") as tmp:
        scheduler.save_pretrained(tmp)
    write_validation(out_dir, table, k)
    write_loss(out_dir, outcome.history, "noise-aware classifier (cross-entropy)")
    write_classes(out_dir / "classes.json", list(data.classes))
    provenance.write(
        out_dir / "provenance.json",
        "train_classifier",
        cfg,
        store=str(store_dir),
        split=str(split_dir),
        classes=list(data.classes),
        class_counts=data.class_counts().tolist(),
        n_valid=len(valid),
        image_size=[data.height, data.width],
        noise_schedule_from=str(scheduler_dir) if scheduler_dir else "config",
        resumed_from_step=outcome.start_step,
        mixed_precision=outcome.accelerator.mixed_precision,
        processes=outcome.accelerator.num_processes,
    )
    log.info("wrote classifier to %s", out_dir)
    return table
