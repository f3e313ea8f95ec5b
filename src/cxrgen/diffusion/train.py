"""Train the class-conditional diffusion model: ``train_diffusion(store, split, out, cfg)``.

Outputs in ``out_dir``: ``unet/`` (EMA weights, ``UNet2DModel.from_pretrained``),
``scheduler/`` (``DDPMScheduler.from_pretrained``), ``classes.json``, ``loss.parquet`` +
``loss.png``, ``samples.png`` (one row per class, DDIM from fixed seeds), ``provenance.json``,
and ``checkpoints/`` (resume state; re-running resumes from the newest).
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
from cxrgen.config import check
from cxrgen.data.classes import write_classes
from cxrgen.diffusion.model import (
    build_scheduler,
    build_unet,
    check_unet_geometry,
    check_unet_shape,
)
from cxrgen.diffusion.preview import class_grid
from cxrgen.training.artifacts import atomic_dir, write_image_grid, write_loss
from cxrgen.training.data import load_split, require_every_class
from cxrgen.training.loop import StepContext, run_training, seeded
from cxrgen.training.loop_config import TrainLoopConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiffusionTrainConfig(TrainLoopConfig):
    """Class-conditional DDPM training (the shared keys are documented on TrainLoopConfig).

    block_out_channels: UNet widths per level (the image side must be divisible by
        2**(levels-1)). layers_per_block: ResNet blocks per level.
    attention_resolutions: feature-map sides with self-attention (AttnDown/UpBlock2D), e.g.
        (16,) for 64x64 images with 3 levels (64, 32, 16). mid_attention: attention in the
        bottleneck. attention_head_dim: channels per attention head.
    norm_num_groups: GroupNorm groups; must divide every width. dropout: in the ResNet blocks.
    num_train_timesteps / beta_schedule ('linear' or 'cosine' = squaredcos_cap_v2): the DDPM
        noise schedule (epsilon prediction), saved in scheduler/.
    label_dropout: probability that a training label is replaced by the null class K, which
        trains the unconditional model classifier-free guidance needs (0.1-0.2).
    focus_timesteps / focus_probability: with probability focus_probability a sample's
        timestep is drawn uniformly below focus_timesteps x T instead of over all T. The
        counterfactuals only run the model from the inversion depth down, so a small CPU
        budget is better spent there; the rest of the draws keep the model usable from pure
        noise (the sample grid). focus_probability 0 = uniform timesteps (the paper).
    sample_every: also write samples/step-N.png every N steps (0 = only samples.png at the end).
    n_sample_per_class / sample_steps / sample_guidance_scale: the preview grid (DDIM steps,
        classifier-free guidance weight w; 0 = plain conditional).
    """

    batch_size: int = 8
    lr: float = 1e-3
    max_steps: int = 1000
    warmup_steps: int = 50
    checkpoint_every: int = 200
    block_out_channels: tuple[int, ...] = (16, 32, 64, 128)
    layers_per_block: int = 1
    attention_resolutions: tuple[int, ...] = (16,)
    mid_attention: bool = True
    attention_head_dim: int = 16
    norm_num_groups: int = 8
    dropout: float = 0.1
    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"
    label_dropout: float = 0.15
    focus_timesteps: float = 1.0
    focus_probability: float = 0.0
    sample_every: int = 0
    n_sample_per_class: int = 8
    sample_steps: int = 50
    sample_guidance_scale: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        check_unet_shape(self)
        check(
            0 <= self.label_dropout < 1,
            f"label_dropout must be in [0, 1), got {self.label_dropout}",
        )
        check(
            0 < self.focus_timesteps <= 1,
            f"focus_timesteps is a fraction of the timesteps in (0, 1], got {self.focus_timesteps}",
        )
        check(
            0 <= self.focus_probability <= 1,
            f"focus_probability must be in [0, 1], got {self.focus_probability}",
        )
        check(self.sample_every >= 0, "sample_every must be >= 0 (0 = only at the end)")
        check(self.n_sample_per_class >= 1, "n_sample_per_class must be >= 1")
        check(
            1 <= self.sample_steps <= self.num_train_timesteps,
            f"sample_steps must be in [1, num_train_timesteps={self.num_train_timesteps}]",
        )
        check(self.sample_guidance_scale >= 0, "sample_guidance_scale must be >= 0")


def diffusion_loss(
    model: nn.Module,
    x0: torch.Tensor,
    labels: torch.Tensor,
    ctx: StepContext,
    *,
    scheduler: DDPMScheduler,
    num_classes: int,
    label_dropout: float,
    focus_timesteps: float = 1.0,
    focus_probability: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Epsilon-prediction MSE, labels dropped to the null class K with p.

    t is uniform over the schedule, or with ``focus_probability`` uniform below
    ``focus_timesteps`` x T (no extra random draws when focus_probability is 0).
    """
    n_steps = scheduler.config.num_train_timesteps
    t = ctx.randint(n_steps)
    if focus_probability > 0:
        low = ctx.randint(max(1, round(focus_timesteps * n_steps)))
        t = torch.where(ctx.rand() < focus_probability, low, t)
    noise = ctx.randn(*x0.shape[1:]).to(x0.dtype)
    drop = ctx.rand() < label_dropout
    labels = torch.where(drop, torch.full_like(labels, num_classes), labels)
    x_t = scheduler.add_noise(x0, noise, t)
    pred = model(x_t, t, class_labels=labels).sample
    return F.mse_loss(pred.float(), noise.float()), {}


def train_diffusion(
    store_dir: str | Path,
    split_dir: str | Path,
    out_dir: str | Path,
    cfg: DiffusionTrainConfig,
    progress: bool = True,
    checkpoint_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Train on the 'train' split of ``split_dir``; write the outputs listed in the module doc.

    Returns the loss table. Re-running resumes from the newest checkpoint in
    ``checkpoint_dir`` (default ``out_dir/checkpoints``; put it outside a Snakemake
    ``directory()`` output, which Snakemake deletes before a re-run) and, when training is
    already complete, only rewrites the outputs.
    """
    store_dir, split_dir, out_dir = Path(store_dir), Path(split_dir), Path(out_dir)
    checkpoint_dir = out_dir / "checkpoints" if checkpoint_dir is None else Path(checkpoint_dir)
    data = load_split(store_dir, split_dir, "train")
    require_every_class(data)
    check_unet_geometry(data.height, data.width, cfg.block_out_channels, cfg.attention_resolutions)
    k = data.num_classes
    scheduler = build_scheduler(cfg.num_train_timesteps, cfg.beta_schedule)

    def build():
        return build_unet(
            (data.height, data.width),
            k,
            cfg.block_out_channels,
            cfg.layers_per_block,
            cfg.attention_resolutions,
            cfg.dropout,
            norm_num_groups=cfg.norm_num_groups,
            attention_head_dim=cfg.attention_head_dim,
            mid_attention=cfg.mid_attention,
            num_train_timesteps=cfg.num_train_timesteps,
        )

    unet = seeded(cfg.seed, build)
    log.info(
        "UNet: %.2fM parameters, %d classes + null class, %dx%d",
        sum(p.numel() for p in unet.parameters()) / 1e6,
        k,
        data.height,
        data.width,
    )

    def preview(model) -> object:
        return class_grid(
            model,
            scheduler,
            k,
            cfg.n_sample_per_class,
            cfg.seed,
            cfg.sample_steps,
            cfg.sample_guidance_scale,
        )

    periodic = None
    if cfg.sample_every:
        periodic = (
            cfg.sample_every,
            lambda step, m: write_image_grid(
                out_dir / "samples" / f"step-{step:08d}.png", preview(m)
            ),
        )
    loss_fn = functools.partial(
        diffusion_loss,
        scheduler=scheduler,
        num_classes=k,
        label_dropout=cfg.label_dropout,
        focus_timesteps=cfg.focus_timesteps,
        focus_probability=cfg.focus_probability,
    )
    outcome = run_training(
        unet,
        loss_fn,
        data,
        checkpoint_dir,
        cfg,
        stage="train_diffusion",
        progress=progress,
        periodic=periodic,
    )
    if not outcome.accelerator.is_main_process:
        return outcome.history
    with atomic_dir(out_dir / "unet") as tmp:
        outcome.model.save_pretrained(tmp)
    with atomic_dir(out_dir / "scheduler") as tmp:
        scheduler.save_pretrained(tmp)
    write_classes(out_dir / "classes.json", list(data.classes))
    write_loss(out_dir, outcome.history, "diffusion model (epsilon MSE)")
    write_image_grid(out_dir / "samples.png", preview(outcome.model))
    provenance.write(
        out_dir / "provenance.json",
        "train_diffusion",
        cfg,
        store=str(store_dir),
        split=str(split_dir),
        classes=list(data.classes),
        null_class=k,
        class_counts=data.class_counts().tolist(),
        image_size=[data.height, data.width],
        resumed_from_step=outcome.start_step,
        parameters=sum(p.numel() for p in outcome.model.parameters()),
        mixed_precision=outcome.accelerator.mixed_precision,
        processes=outcome.accelerator.num_processes,
    )
    log.info("wrote diffusion model to %s", out_dir)
    return outcome.history
