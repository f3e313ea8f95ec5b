"""Train the class-conditional diffusion model: ``train_diffusion(store, split, out, cfg)``.

Outputs in ``out_dir``: ``unet/`` (EMA weights, ``UNet2DModel.from_pretrained``),
``scheduler/`` (``DDPMScheduler.from_pretrained``), ``classes.json``, ``loss.parquet`` +
``loss.png``, ``samples.png`` (one row per class, DDIM from fixed seeds), ``provenance.json``,
and ``checkpoints/`` (resume state; re-running resumes from the newest).
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

from cxrgen.data.store import load_split, stored_preprocessing
from cxrgen.diffusion.config import DiffusionTrainConfig
from cxrgen.diffusion.model import build_scheduler, build_unet, check_unet_geometry
from cxrgen.diffusion.preview import class_grid
from cxrgen.io import atomic_dir
from cxrgen.plotting import write_image_grid
from cxrgen.training.data import require_every_class
from cxrgen.training.loop import seeded, train_and_write
from cxrgen.training.step import StepContext, single_loss

log = logging.getLogger(__name__)


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

    def write_samples(path: Path, nets) -> None:
        write_image_grid(path, preview(nets["model"]))

    def save(outcome) -> dict:
        with atomic_dir(out_dir / "unet") as tmp:
            outcome.model.save_pretrained(tmp)
        with atomic_dir(out_dir / "scheduler") as tmp:
            scheduler.save_pretrained(tmp)
        return {"parameters": sum(p.numel() for p in outcome.model.parameters())}

    loss_fn = functools.partial(
        diffusion_loss,
        scheduler=scheduler,
        num_classes=k,
        label_dropout=cfg.label_dropout,
        focus_timesteps=cfg.focus_timesteps,
        focus_probability=cfg.focus_probability,
    )
    outcome = train_and_write(
        single_loss(unet, loss_fn),
        data,
        out_dir,
        cfg,
        stage="train_diffusion",
        title="diffusion model (epsilon MSE)",
        save=save,
        write_samples=write_samples,
        checkpoint_dir=checkpoint_dir,
        provenance_extra=dict(
            store=str(store_dir),
            split=str(split_dir),
            null_class=k,
            preprocess=stored_preprocessing(store_dir),
        ),  # fmt: skip
        progress=progress,
    )
    return outcome.history
