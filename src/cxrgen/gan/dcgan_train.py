"""Train the class-conditional DCGAN baseline: ``train_dcgan(...)``.

Same data, resolution, seeding, checkpoint / resume and EMA machinery as every trainer
(:func:`cxrgen.training.loop.run_training`); the step is one discriminator update (reals of
their class vs fakes of uniformly drawn classes) and one non-saturating generator update.

Outputs in ``out_dir``: ``generator.safetensors`` (EMA weights) + ``config.json``,
``classes.json``, ``loss.parquet`` + ``loss.png``, ``samples.png`` (one labelled row per
class), ``provenance.json`` and ``checkpoints/``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from cxrgen.data.store import load_split
from cxrgen.gan.config import DCGANTrainConfig
from cxrgen.gan.dcgan import (
    DCGANDiscriminator,
    DCGANGenerator,
    DCGANModel,
    check_dcgan_geometry,
)
from cxrgen.gan.stargan_losses import adversarial_loss
from cxrgen.model_files import save_networks
from cxrgen.plotting import Panel, write_labelled_grid
from cxrgen.training.data import require_every_class
from cxrgen.training.loop import seeded, train_and_write
from cxrgen.training.seeding import Purpose, generator
from cxrgen.training.step import Batch, StepContext, TrainSpec, Update

log = logging.getLogger(__name__)


def dcgan_discriminator_loss(
    G: nn.Module,
    D: nn.Module,
    x_real: torch.Tensor,
    y_real: torch.Tensor,
    z: torch.Tensor,
    y_fake: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, float]]:
    """BCE(D(x, y), 1) + BCE(D(G(z, y'), y'), 0)."""
    with torch.no_grad():
        x_fake = G(z, y_fake)
    loss_real = adversarial_loss(D(x_real, y_real), 1.0)
    loss_fake = adversarial_loss(D(x_fake, y_fake), 0.0)
    return loss_real + loss_fake, {"real": loss_real.item(), "fake": loss_fake.item()}


def dcgan_generator_loss(
    G: nn.Module, D: nn.Module, z: torch.Tensor, y_fake: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float]]:
    """Non-saturating BCE(D(G(z, y'), y'), 1)."""
    loss = adversarial_loss(D(G(z, y_fake), y_fake), 1.0)
    return loss, {"adv": loss.item()}


def dcgan_step(
    nets: Mapping[str, nn.Module],
    batch: Batch,
    ctx: StepContext,
    update: Update,
    state: dict[str, float],
    *,
    latent_dim: int,
    num_classes: int,
) -> dict[str, float]:
    G, D = nets["generator"], nets["discriminator"]
    z, y_fake = ctx.randn(latent_dim), ctx.randint(num_classes)
    d_loss, d_stats = dcgan_discriminator_loss(G, D, batch.x, batch.y, z, y_fake)
    update(d_loss, "discriminator")
    g_loss, g_stats = dcgan_generator_loss(G, D, z, y_fake)
    update(g_loss, "generator")
    return {f"d_{k}": v for k, v in d_stats.items()} | {f"g_{k}": v for k, v in g_stats.items()}


def latent(seed: int, latent_dim: int, *parts: int) -> torch.Tensor:
    """The z of one sample: its own generator seeded by (seed, SAMPLE, *parts)."""
    return torch.randn(latent_dim, generator=generator(seed, Purpose.SAMPLE, *parts))


def class_panel(model: DCGANModel, n: int, seed: int) -> Panel:
    device = next(model.generator.parameters()).device
    k = len(model.classes)
    images = np.empty((k, n, *model.image_size), np.float32)
    for c in range(k):
        z = torch.stack([latent(seed, model.latent_dim, c, i) for i in range(n)]).to(device)
        out = model.sample(z, torch.full((n,), c, dtype=torch.long, device=device))
        images[c] = (out[:, 0].cpu().numpy() + 1) / 2
    return Panel(
        "class-conditional DCGAN samples",
        images,
        list(model.classes),
        [f"sample {i + 1}" for i in range(n)],
    )


def train_dcgan(
    store_dir: str | Path,
    split_dir: str | Path,
    out_dir: str | Path,
    cfg: DCGANTrainConfig,
    progress: bool = True,
) -> pd.DataFrame:
    """Train on the 'train' split; write the outputs listed in the module doc; return the loss
    table. Re-running with the same ``out_dir`` resumes from the newest checkpoint."""
    store_dir, split_dir, out_dir = Path(store_dir), Path(split_dir), Path(out_dir)
    data = load_split(store_dir, split_dir, "train")
    require_every_class(data)
    check_dcgan_geometry(data.height, data.width, cfg.upsamplings)
    k, size = data.num_classes, (data.height, data.width)
    common = {"image_size": list(size), "num_classes": k, "n_up": cfg.upsamplings}
    common |= {"base_dim": cfg.base_dim, "max_conv_dim": cfg.max_conv_dim, "channels": 1}
    g_kwargs = {**common, "latent_dim": cfg.latent_dim, "embed_dim": cfg.embed_dim}
    nets = seeded(
        cfg.seed,
        lambda: nn.ModuleDict(
            {"generator": DCGANGenerator(**g_kwargs), "discriminator": DCGANDiscriminator(**common)}
        ),
    )
    config = {
        "kind": "dcgan",
        "classes": list(data.classes),
        "image_size": list(size),
        "generator": g_kwargs,
        "discriminator": common,
        "train": cfg.as_dict(),
    }
    counts = {n: sum(p.numel() for p in m.parameters()) / 1e6 for n, m in nets.items()}
    log.info("DCGAN parameters (M): %s", {n: round(v, 3) for n, v in counts.items()})

    def write_samples(path: Path, averaged: dict[str, nn.Module]) -> None:
        model = DCGANModel(averaged["generator"], data.classes, size, cfg.latent_dim, config)
        write_labelled_grid(path, [class_panel(model, cfg.n_sample_per_class, cfg.seed)])

    spec = TrainSpec(
        nets=dict(nets),
        step=functools.partial(dcgan_step, latent_dim=cfg.latent_dim, num_classes=k),
        keep=("generator",),
    )
    outcome = train_and_write(
        spec,
        data,
        out_dir,
        cfg,
        stage="train_dcgan",
        title="class-conditional DCGAN losses",
        save=lambda outcome: save_networks(out_dir, outcome.nets, config),
        write_samples=write_samples,
        provenance_extra=dict(store=str(store_dir), split=str(split_dir), parameters_m=counts),
        progress=progress,
    )
    return outcome.history
