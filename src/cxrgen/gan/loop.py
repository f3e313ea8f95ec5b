"""The scaffolding both GAN trainers share: data, seeded steps, updates, EMA, checkpoints.

A trainer describes its networks and one optimisation step in a :class:`GanSpec`; the loop
does the rest: devices, the step-keyed data order and augmentation (with ``n_ref`` reference
images per sample drawn from one random domain, as StarGAN v2's reference loader), Adam per
network, the warm-up schedule, fixed-beta EMA copies, resumable checkpoints every N steps, the
loss history and the progress bar.

Determinism: the data of step s, the generator handed to the step (``ctx``), the reference
draw and the global torch RNG are all seeded from (seed, s); loss weights that decay over
training (StarGAN v2's lambda_ds) live in ``state``, which is checkpointed, so a resumed run
ends with exactly the weights of an uninterrupted one (bit-for-bit on CPU).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from diffusers.optimization import get_constant_schedule_with_warmup
from torch import nn
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

from cxrgen import provenance
from cxrgen.config import check
from cxrgen.data.classes import write_classes
from cxrgen.devices import resolve_device
from cxrgen.gan.artifacts import save_networks, write_gan_loss
from cxrgen.gan.config import GANTrainConfig
from cxrgen.training.checkpoint import Checkpointer
from cxrgen.training.data import SampleKey, SplitImages, StepBatchSampler, XrayDataset
from cxrgen.training.loop import StepContext, set_aside_if_incompatible
from cxrgen.training.seeding import Purpose, derive_seed, generator

log = logging.getLogger(__name__)


class EMA:
    """A fixed-beta moving average of ``model`` (StarGAN v2: ``lerp(param, avg, beta)``).

    Buffers (batch-norm statistics) are copied from the model, not averaged.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.model = model
        self.decay = decay
        self.averaged = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self) -> None:
        averaged = list(self.averaged.parameters())
        current = [p.detach() for p in self.model.parameters()]
        torch._foreach_lerp_(averaged, current, 1.0 - self.decay)
        for mine, theirs in zip(self.averaged.buffers(), self.model.buffers(), strict=True):
            mine.copy_(theirs)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.averaged.state_dict()

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.averaged.load_state_dict(state)


@dataclass
class GanBatch:
    """One step's data: sources ``x`` (B, 1, H, W) in [-1, 1] with domains ``y``, and ``refs``:
    ``n_ref`` batches of reference images, all of the domains ``y_ref``."""

    x: torch.Tensor
    y: torch.Tensor
    refs: tuple[torch.Tensor, ...] = ()
    y_ref: torch.Tensor | None = None


class Updates:
    """``updates(loss, *names)``: zero every gradient, backward, clip, step the named optimizers.

    Gradients reaching networks that are not named are discarded at the next update.
    """

    def __init__(self, nets: Mapping[str, nn.Module], optimizers, grad_clip: float):
        self.nets, self.optimizers, self.grad_clip = nets, optimizers, grad_clip

    def __call__(self, loss: torch.Tensor, *names: str) -> None:
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for name in names:
            if self.grad_clip > 0:
                nn.utils.clip_grad_norm_(self.nets[name].parameters(), self.grad_clip)
            self.optimizers[name].step()


StepFn = Callable[[GanBatch, StepContext, Updates, dict[str, float]], dict[str, Any]]


@dataclass
class GanSpec:
    """What a GAN trainer hands the loop.

    nets: every trained network (each gets an Adam optimizer). lrs: learning rates that differ
    from ``cfg.lr`` (StarGAN v2's mapping network). ema: names of networks with an averaged
    copy (the copies are what is saved). state: loss weights that change over training; the
    step updates it in place and it is checkpointed. n_ref: reference images per sample.
    step: ``step(batch, ctx, updates, state) -> stats`` (scalars, logged as loss columns).
    """

    nets: dict[str, nn.Module]
    step: StepFn
    ema: tuple[str, ...] = ()
    lrs: dict[str, float] = field(default_factory=dict)
    state: dict[str, float] = field(default_factory=dict)
    n_ref: int = 0


@dataclass
class GanOutcome:
    averaged: dict[str, nn.Module]  # EMA copies (eval mode) of spec.ema, on the device
    history: pd.DataFrame  # one row per logging interval: step, images_per_s, stats, state
    start_step: int
    state: dict[str, float]
    device: torch.device


class ReferenceBatchSampler(Sampler[list[SampleKey]]):
    """The keys of each step's sources, then ``n_ref`` x B reference keys.

    The reference domains are uniform over the classes and each reference image uniform within
    its domain (StarGAN v2 samples its reference loader class-balanced), seeded by (seed, step).
    """

    def __init__(self, base: StepBatchSampler, labels: np.ndarray, n_ref: int, seed: int):
        self.base, self.n_ref, self.seed = base, n_ref, seed
        self.members = [np.flatnonzero(labels == c) for c in range(int(labels.max()) + 1)]

    def __len__(self) -> int:
        return len(self.base)

    def __iter__(self):
        for keys in self.base:
            step, b = keys[0][1], len(keys)
            if self.n_ref:
                g = generator(self.seed, Purpose.STEP, step, 1)
                domains = torch.randint(0, len(self.members), (b,), generator=g).tolist()
                for r in range(self.n_ref):
                    u = torch.rand(b, generator=g, dtype=torch.float64).tolist()
                    for i, (d, ui) in enumerate(zip(domains, u, strict=True)):
                        pool = self.members[d]
                        keys.append((int(pool[int(ui * len(pool))]), step, b * (1 + r) + i))
            yield keys


def _warn_on_changes(saved: Mapping[str, Any], data: SplitImages) -> None:
    if saved.get("classes") not in (None, list(data.classes)):
        log.warning("the training classes differ from the checkpoint's %s", saved.get("classes"))


def run_gan_training(
    spec: GanSpec,
    data: SplitImages,
    out_dir: str | Path,
    cfg: GANTrainConfig,
    *,
    stage: str,
    progress: bool = True,
    periodic: tuple[int, Callable[[int, dict[str, nn.Module]], None]] | None = None,
) -> GanOutcome:
    """Train ``spec`` on ``data`` with checkpoints in ``out_dir/checkpoints`` (resumes).

    ``periodic = (every, fn)`` calls ``fn(step, averaged_nets)`` every ``every`` steps.
    """
    check(
        cfg.batch_size <= len(data),
        f"batch_size {cfg.batch_size} is larger than the {len(data)} training images; "
        "lower batch_size",
    )
    device = resolve_device(cfg.device)
    memory_format = torch.channels_last if cfg.channels_last else torch.preserve_format
    for net in spec.nets.values():
        net.to(device, memory_format=memory_format).train()
    optimizers = {
        name: torch.optim.Adam(
            net.parameters(),
            lr=spec.lrs.get(name, cfg.lr),
            betas=(cfg.adam_beta1, cfg.adam_beta2),
            weight_decay=cfg.weight_decay,
        )
        for name, net in spec.nets.items()
    }
    schedules = {
        name: get_constant_schedule_with_warmup(opt, cfg.warmup_steps)
        for name, opt in optimizers.items()
    }
    emas = {name: EMA(spec.nets[name], cfg.ema_decay) for name in spec.ema}
    objects: dict[str, Any] = dict(spec.nets)
    objects |= {f"ema_{n}": e for n, e in emas.items()}
    objects |= {f"optimizer_{n}": o for n, o in optimizers.items()}
    objects |= {f"lr_schedule_{n}": s for n, s in schedules.items()}
    set_aside_if_incompatible(Path(out_dir) / "checkpoints", cfg)
    ckpt = Checkpointer(Path(out_dir) / "checkpoints", keep=cfg.keep_checkpoints, **objects)
    restored = ckpt.restore_latest()
    start, extra = restored if restored else (0, {})
    state = dict(spec.state)
    if restored:
        _warn_on_changes(extra, data)
        state.update(extra.get("state", {}))
    rows: list[dict[str, float]] = list(extra.get("history", []))

    base = StepBatchSampler(
        data.labels, cfg.batch_size, cfg.seed, start, cfg.max_steps, cfg.balanced_sampling
    )
    loader = DataLoader(
        XrayDataset(data, cfg.seed, cfg.augmentation()),
        batch_sampler=ReferenceBatchSampler(base, data.labels, spec.n_ref, cfg.seed),
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
    )
    updates = Updates(spec.nets, optimizers, cfg.grad_clip)
    bf16 = cfg.mixed_precision == "bf16" and device.type == "cuda"
    bar = tqdm(total=cfg.max_steps, initial=start, desc=stage, unit="step", disable=not progress)
    if start < cfg.max_steps:
        log.info(
            "%s: %d training images, domains %s, steps %d..%d, batch %d on %s",
            stage,
            len(data),
            list(data.classes),
            start,
            cfg.max_steps,
            cfg.batch_size,
            device,
        )
    b, step = cfg.batch_size, start
    interval: dict[str, Any] = {"n": 0, "stats": {}, "t0": time.perf_counter()}
    for images, labels in loader:
        torch.manual_seed(derive_seed(cfg.seed, Purpose.FORWARD, step))
        images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        labels = labels.to(device, non_blocking=True)
        batch = GanBatch(
            images[:b],
            labels[:b],
            tuple(images[b * (1 + r) : b * (2 + r)] for r in range(spec.n_ref)),
            labels[b : 2 * b] if spec.n_ref else None,
        )
        ctx = StepContext(step, generator(cfg.seed, Purpose.STEP, step), b, slice(0, b), device)
        used = dict(state)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            stats = spec.step(batch, ctx, updates, state)
        for schedule in schedules.values():
            schedule.step()
        for ema in emas.values():
            ema.update()
        step += 1
        bar.update(1)
        interval["n"] += 1
        for k, v in stats.items():
            interval["stats"][k] = interval["stats"].get(k, 0.0) + v
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            n, elapsed = interval["n"], time.perf_counter() - interval["t0"]
            row = {"step": step, "images_per_s": n * b / max(elapsed, 1e-9)}
            row |= {k: float(v) / n for k, v in interval["stats"].items()} | used
            rows.append(row)
            bar.set_postfix({k: f"{v:.3g}" for k, v in row.items() if k != "step"}, refresh=False)
            interval = {"n": 0, "stats": {}, "t0": time.perf_counter()}
        if step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
            ckpt.save(
                step,
                {
                    "history": rows,
                    "state": state,
                    "config": cfg.as_dict(),
                    "classes": list(data.classes),
                    "n_train": len(data),
                },
            )
        if periodic is not None and step % periodic[0] == 0:
            periodic[1](step, {n: e.averaged for n, e in emas.items()})
    bar.close()
    return GanOutcome(
        {n: e.averaged for n, e in emas.items()}, pd.DataFrame(rows), start, state, device
    )


def train_and_write(
    spec: GanSpec,
    data: SplitImages,
    out_dir: Path,
    cfg: GANTrainConfig,
    *,
    stage: str,
    title: str,
    config: Mapping[str, Any],
    write_samples: Callable[[Path, Mapping[str, nn.Module]], None],
    provenance_extra: Mapping[str, Any],
    progress: bool = True,
) -> pd.DataFrame:
    """Train with :func:`run_gan_training`, then write what every GAN model folder holds.

    Writes the EMA networks + ``config.json``, ``classes.json``, the loss table and curve,
    ``samples.png`` (and ``samples/step-N.png`` every ``sample_every`` steps) and
    ``provenance.json`` (with the final value of every decaying weight in ``spec.state``).
    Returns the loss history.
    """
    periodic = None
    if cfg.sample_every:
        periodic = (
            cfg.sample_every,
            lambda step, avg: write_samples(out_dir / "samples" / f"step-{step:08d}.png", avg),
        )
    outcome = run_gan_training(
        spec, data, out_dir, cfg, stage=stage, progress=progress, periodic=periodic
    )
    save_networks(out_dir, outcome.averaged, config)
    write_classes(out_dir / "classes.json", list(data.classes))
    write_gan_loss(out_dir, outcome.history, title)
    write_samples(out_dir / "samples.png", outcome.averaged)
    provenance.write(
        out_dir / "provenance.json",
        stage,
        cfg,
        classes=list(data.classes),
        class_counts=data.class_counts().tolist(),
        image_size=[data.height, data.width],
        resumed_from_step=outcome.start_step,
        device=str(outcome.device),
        **{f"final_{k}": v for k, v in outcome.state.items()},
        **provenance_extra,
    )
    log.info("wrote %s model to %s", stage.removeprefix("train_"), out_dir)
    return outcome.history
