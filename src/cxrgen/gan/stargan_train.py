"""Train Med-StyleGAN2 (StarGAN v2, w_hpf = 0, lambda_ds = 2): ``train_stargan(...)``.

Each step, as StarGAN v2: a discriminator update with latent-guided fakes, one with
reference-guided fakes, a generator update latent-guided (generator, mapping network and style
encoder step) and one reference-guided (the generator steps); then the EMA copies move and
lambda_ds decays linearly towards 0 over ``ds_iter`` steps (its current value is checkpointed).

Outputs in ``out_dir``: ``generator.safetensors``, ``mapping_network.safetensors``,
``style_encoder.safetensors`` (EMA weights) + ``config.json`` (read back by
:func:`~cxrgen.gan.stargan_nets.load_stargan`), ``classes.json``, ``loss.parquet`` +
``loss.png``, ``samples.png`` (latent- and reference-guided translations of each source
domain into each target domain),
``provenance.json`` and ``checkpoints/`` (re-running resumes from the newest).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cxrgen.config import check
from cxrgen.data.store import SplitImages, load_split
from cxrgen.gan.config import StarGANTrainConfig
from cxrgen.gan.stargan_losses import decay_ds, discriminator_loss, generator_loss
from cxrgen.gan.stargan_nets import (
    StarGANModel,
    StarGANNets,
    build_stargan,
    check_generator_geometry,
)
from cxrgen.model_files import save_networks
from cxrgen.plotting import Panel, write_labelled_grid
from cxrgen.training.data import XrayDataset, require_every_class
from cxrgen.training.loop import seeded, train_and_write
from cxrgen.training.seeding import Purpose, generator
from cxrgen.training.step import Batch, StepContext, TrainSpec, Update

log = logging.getLogger(__name__)


def architecture(cfg: StarGANTrainConfig, num_domains: int, height: int, width: int) -> dict:
    """The constructor keyword arguments of the four networks (saved in config.json)."""
    trunk = {"base_dim": cfg.base_dim, "max_conv_dim": cfg.max_conv_dim, "channels": 1}
    return {
        "generator": {
            "style_dim": cfg.style_dim,
            "n_down": cfg.g_downsamplings,
            "n_bottleneck": cfg.g_bottleneck_blocks,
            **trunk,
        },
        "mapping_network": {
            "latent_dim": cfg.latent_dim,
            "style_dim": cfg.style_dim,
            "num_domains": num_domains,
            "hidden_dim": cfg.mapping_dim,
        },
        "style_encoder": {
            "image_size": [height, width],
            "style_dim": cfg.style_dim,
            "num_domains": num_domains,
            **trunk,
        },
        "discriminator": {"image_size": [height, width], "num_domains": num_domains, **trunk},
    }


def check_domains(data: SplitImages) -> None:
    check(
        data.num_classes >= 2,
        f"StarGAN translates between domains but the split has {data.num_classes} class "
        f"({list(data.classes)}); configure at least 2 classes in the split",
    )
    require_every_class(data)


def stargan_step(
    modules: Mapping[str, torch.nn.Module],
    batch: Batch,
    ctx: StepContext,
    update: Update,
    state: dict[str, float],
    *,
    cfg: StarGANTrainConfig,
) -> dict[str, float]:
    """One StarGAN v2 step: D latent, D reference, G latent, G reference; decay lambda_ds."""
    nets = StarGANNets(**modules)
    x, y, y_trg = batch.x, batch.y, batch.y_ref
    x_ref, x_ref2 = batch.refs
    z, z2 = ctx.randn(cfg.latent_dim), ctx.randn(cfg.latent_dim)
    stats: dict[str, float] = {}
    d_latent, s = discriminator_loss(nets, x, y, y_trg, z_trg=z, lambda_reg=cfg.lambda_reg)
    update(d_latent, "discriminator")
    stats |= {f"d_latent_{k}": v for k, v in s.items()}
    d_ref, s = discriminator_loss(nets, x, y, y_trg, x_ref=x_ref, lambda_reg=cfg.lambda_reg)
    update(d_ref, "discriminator")
    stats |= {f"d_ref_{k}": v for k, v in s.items()}
    weights = {
        "lambda_sty": cfg.lambda_sty,
        "lambda_ds": state["lambda_ds"],
        "lambda_cyc": cfg.lambda_cyc,
    }
    g_latent, s = generator_loss(nets, x, y, y_trg, z_trgs=(z, z2), **weights)
    update(g_latent, "generator", "mapping_network", "style_encoder")
    stats |= {f"g_latent_{k}": v for k, v in s.items()}
    g_ref, s = generator_loss(nets, x, y, y_trg, x_refs=(x_ref, x_ref2), **weights)
    update(g_ref, "generator")
    stats |= {f"g_ref_{k}": v for k, v in s.items()}
    state["lambda_ds"] = decay_ds(state["lambda_ds"], cfg.lambda_ds, cfg.ds_iter)
    return stats


def stargan_spec(nets: Mapping[str, torch.nn.Module], cfg: StarGANTrainConfig) -> TrainSpec:
    """The four networks and :func:`stargan_step` for the training loop: Adam with a constant
    rate (the mapping network's own), fixed-beta EMA of the generator side, two references."""
    return TrainSpec(
        nets=dict(nets),
        step=functools.partial(stargan_step, cfg=cfg),
        keep=("generator", "mapping_network", "style_encoder"),
        lrs={"mapping_network": cfg.mapping_lr},
        state={"lambda_ds": cfg.lambda_ds},
        n_ref=2,
    )


def sample_panels(model: StarGANModel, data: SplitImages, n_per_domain: int, seed: int):
    """Latent- and reference-guided translations of the first training images of each domain."""
    dataset, k = XrayDataset(data), len(model.classes)
    device = next(model.nets.generator.parameters()).device
    members = [np.flatnonzero(data.labels == c) for c in range(k)]
    sources = [(c, int(i)) for c in range(k) for i in members[c][:n_per_domain]]
    x = torch.stack([dataset[i][0] for _, i in sources]).to(device)
    refs = torch.stack([dataset[int(members[c][-1])][0] for c in range(k)]).to(device)
    z = torch.stack(
        [
            torch.randn(model.latent_dim, generator=generator(seed, Purpose.SAMPLE, t))
            for t in range(k)
        ]
    ).to(device)
    n = len(sources)
    latent = np.full((n, k + 1, *model.image_size), np.nan, np.float32)
    reference = np.full((n + 1, k + 1, *model.image_size), np.nan, np.float32)
    unit = (x[:, 0].cpu().numpy() + 1) / 2
    latent[:, 0], reference[1:, 0] = unit, unit
    reference[0, 1:] = (refs[:, 0].cpu().numpy() + 1) / 2
    for t in range(k):
        y_t = torch.full((n,), t, dtype=torch.long, device=device)
        out = model.translate_latent(x, y_t, z[t].expand(n, -1))
        latent[:, t + 1] = (out[:, 0].cpu().numpy() + 1) / 2
        out = model.translate_reference(x, y_t, refs[t].expand(n, -1, -1, -1))
        reference[1:, t + 1] = (out[:, 0].cpu().numpy() + 1) / 2
    rows = [f"source: {model.classes[c]}" for c, _ in sources]
    targets = [f"to {name}" for name in model.classes]
    return [
        Panel("latent-guided (one z per target domain)", latent, rows, ["source", *targets]),
        Panel(
            "reference-guided (style of the top-row reference)",
            reference,
            ["references", *rows],
            ["source", *[f"ref {name}" for name in model.classes]],
        ),
    ]


def train_stargan(
    store_dir: str | Path,
    split_dir: str | Path,
    out_dir: str | Path,
    cfg: StarGANTrainConfig,
    progress: bool = True,
) -> pd.DataFrame:
    """Train on the 'train' split; write the outputs listed in the module doc; return the loss
    table. Re-running with the same ``out_dir`` resumes from the newest checkpoint."""
    store_dir, split_dir, out_dir = Path(store_dir), Path(split_dir), Path(out_dir)
    data = load_split(store_dir, split_dir, "train")
    check_domains(data)
    check_generator_geometry(data.height, data.width, cfg.g_downsamplings)
    arch = architecture(cfg, data.num_classes, data.height, data.width)
    nets = seeded(cfg.seed, lambda: torch.nn.ModuleDict(build_stargan(arch).modules()))
    counts = {n: sum(p.numel() for p in m.parameters()) / 1e6 for n, m in nets.items()}
    log.info("StarGAN v2 parameters (M): %s", {n: round(v, 3) for n, v in counts.items()})
    config = {
        "kind": "stargan",
        "classes": list(data.classes),
        "image_size": [data.height, data.width],
        "architecture": arch,
        "train": cfg.as_dict(),
    }

    def as_model(averaged: dict[str, torch.nn.Module]) -> StarGANModel:
        parts = StarGANNets(
            averaged["generator"], averaged["mapping_network"], averaged["style_encoder"]
        )
        size = (data.height, data.width)
        return StarGANModel(parts, data.classes, size, cfg.latent_dim, config)

    def write_samples(path: Path, averaged: dict[str, torch.nn.Module]) -> None:
        panels = sample_panels(as_model(averaged), data, cfg.n_sample_per_domain, cfg.seed)
        write_labelled_grid(path, panels, "Med-StyleGAN2 (StarGAN v2) translations")

    outcome = train_and_write(
        stargan_spec(nets, cfg),
        data,
        out_dir,
        cfg,
        stage="train_stargan",
        title="Med-StyleGAN2 (StarGAN v2) losses",
        save=lambda outcome: save_networks(out_dir, outcome.nets, config),
        write_samples=write_samples,
        provenance_extra=dict(store=str(store_dir), split=str(split_dir), parameters_m=counts),
        progress=progress,
    )
    return outcome.history
