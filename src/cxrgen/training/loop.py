"""The one training loop every model uses: accelerate, AdamW + cosine, EMA, resumable.

A model contributes only a loss function ``loss_fn(model, images, labels, ctx) ->
(loss, stats)``; the loop does the rest: devices and mixed precision (accelerate), the
step-keyed data order and augmentation, gradient clipping, the LR schedule, EMA, checkpoints
every N steps (resuming from the newest one), the loss table and the progress bar.

Determinism: the data of step s, the generator handed to the loss (``ctx``) and the global
torch RNG during the step (dropout) are all seeded from (seed, s); a resumed run therefore
ends with exactly the weights of an uninterrupted one (bit-for-bit on CPU; on GPU up to
non-deterministic kernels).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, PartialState
from diffusers.training_utils import EMAModel
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from cxrgen.config import check
from cxrgen.errors import ConfigError
from cxrgen.training.checkpoint import Checkpointer, latest_checkpoint, peek_extra, set_aside
from cxrgen.training.data import SplitImages, StepBatchSampler, XrayDataset
from cxrgen.training.loop_config import RESUMABLE_CHANGES, TrainLoopConfig
from cxrgen.training.schedule import make_lr_schedule, make_optimizer
from cxrgen.training.seeding import Purpose, derive_seed, generator

log = logging.getLogger(__name__)

Stats = dict[str, float | torch.Tensor]


@dataclass
class StepContext:
    """The random source of one step: draws are made for the global batch, then sliced.

    Drawing for the global batch keeps a sample's timestep and noise the same whatever the
    number of processes the batch is split across.
    """

    step: int
    generator: torch.Generator
    global_batch: int
    local: slice
    device: torch.device

    def _local(self, x: torch.Tensor) -> torch.Tensor:
        return x[self.local].to(self.device, non_blocking=True)

    def rand(self, *shape: int) -> torch.Tensor:
        return self._local(torch.rand(self.global_batch, *shape, generator=self.generator))

    def randn(self, *shape: int) -> torch.Tensor:
        return self._local(torch.randn(self.global_batch, *shape, generator=self.generator))

    def randint(self, high: int, *shape: int) -> torch.Tensor:
        return self._local(
            torch.randint(0, high, (self.global_batch, *shape), generator=self.generator)
        )


LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, StepContext], tuple[torch.Tensor, Stats]]


@dataclass
class TrainOutcome:
    model: nn.Module  # EMA weights (or the last ones without EMA), eval mode, accelerator device
    history: pd.DataFrame  # one row per logging interval: step, loss, lr, images_per_s, stats
    start_step: int  # 0, or the step resumed from
    accelerator: Accelerator


def seeded(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    """Build a model with its initial weights drawn from ``seed`` (global RNG left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, Purpose.FORWARD, 2**32))
        return build()


def make_accelerator(cfg: TrainLoopConfig) -> Accelerator:
    cpu = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())
    check(cfg.device != "cuda" or torch.cuda.is_available(), "device is 'cuda' but no GPU is seen")
    precision = cfg.mixed_precision
    if precision == "auto":
        precision = "no" if cpu else ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    try:
        return Accelerator(cpu=cpu, mixed_precision=precision)
    except ValueError as exc:
        # accelerate keeps one state per process; a second training in the same process
        # (tests, notebooks) with other settings must reset it. Not possible when launched
        # distributed, where every process must keep the launcher's settings.
        if "already been initialized" not in str(exc) or PartialState().num_processes > 1:
            raise ConfigError(f"{exc} (device / mixed_precision cannot change here)") from exc
        AcceleratorState._reset_state(reset_partial_state=True)
        return Accelerator(cpu=cpu, mixed_precision=precision)


def averaged_copy(model: nn.Module, ema: EMAModel | None) -> nn.Module:
    """A copy of ``model`` holding the EMA weights (or its own), in eval mode."""
    out = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    if ema is not None:
        ema.copy_to(out.parameters())
    return out.eval().requires_grad_(False)


def changed_keys(saved: dict[str, Any], cfg: TrainLoopConfig) -> list[str]:
    """Config keys that differ from a checkpoint's and change the result (not resumable)."""
    old, new = saved.get("config", {}), cfg.as_dict()
    return sorted(
        k for k in set(old) | set(new) if k not in RESUMABLE_CHANGES and old.get(k) != new.get(k)
    )


def set_aside_if_incompatible(checkpoint_dir: Path, cfg: TrainLoopConfig) -> None:
    """Start fresh (keeping the old checkpoints aside) when the result-changing config changed."""
    newest = latest_checkpoint(checkpoint_dir)
    if newest is None:
        return
    changed = changed_keys(peek_extra(newest), cfg)
    if changed:
        set_aside(checkpoint_dir, f"made with different {', '.join(changed)}; training anew")


def _resume_check(saved: dict[str, Any], cfg: TrainLoopConfig, data: SplitImages) -> None:
    old = saved.get("config", {})  # result-changing keys agree: see set_aside_if_incompatible
    if old.get("max_steps") not in (None, cfg.max_steps):
        log.warning(
            "max_steps changed from %s to %d: the cosine LR schedule is stretched from "
            "the resumed step on",
            old.get("max_steps"),
            cfg.max_steps,
        )
    if saved.get("classes") not in (None, list(data.classes)) or saved.get("n_train") not in (
        None,
        len(data),
    ):
        log.warning(
            "the training data differ from the checkpoint's (classes %s, %s images)",
            saved.get("classes"),
            saved.get("n_train"),
        )


def run_training(
    model: nn.Module,
    loss_fn: LossFn,
    data: SplitImages,
    checkpoint_dir: str | Path,
    cfg: TrainLoopConfig,
    *,
    stage: str,
    progress: bool = True,
    periodic: tuple[int, Callable[[int, nn.Module], None]] | None = None,
) -> TrainOutcome:
    """Train ``model`` on ``data``, resuming from / saving checkpoints in ``checkpoint_dir``.

    ``periodic = (every, fn)`` calls ``fn(step, averaged_model)`` on the main process every
    ``every`` steps (e.g. preview samples).
    """
    check(
        cfg.batch_size <= len(data),
        f"batch_size {cfg.batch_size} is larger than the {len(data)} training images; "
        "lower batch_size",
    )
    acc = make_accelerator(cfg)
    check(
        cfg.batch_size % acc.num_processes == 0,
        f"batch_size {cfg.batch_size} must be divisible by the {acc.num_processes} processes",
    )
    device = acc.device
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model.parameters(), cfg)
    lr_schedule = make_lr_schedule(optimizer, cfg)
    ema = EMAModel(model.parameters(), decay=cfg.ema_decay, foreach=True) if cfg.ema_decay else None
    set_aside_if_incompatible(checkpoint_dir, cfg)
    ckpt = Checkpointer(
        checkpoint_dir,
        keep=cfg.keep_checkpoints,
        model=model,
        ema=ema,
        optimizer=optimizer,
        lr_schedule=lr_schedule,
        scaler=acc.scaler,
    )
    restored = ckpt.restore_latest()
    start, extra = restored if restored else (0, {})
    if restored:
        _resume_check(extra, cfg, data)
        if ema is not None:
            ema.to(device)
    rows: list[dict[str, float]] = list(extra.get("history", []))

    def state_extra() -> dict[str, Any]:
        return {
            "history": rows,
            "config": cfg.as_dict(),
            "classes": list(data.classes),
            "n_train": len(data),
        }

    prepared, optimizer = acc.prepare(model, optimizer)
    forward = torch.compile(prepared) if cfg.compile else prepared
    sampler = StepBatchSampler(
        data.labels,
        cfg.batch_size,
        cfg.seed,
        start,
        cfg.max_steps,
        cfg.balanced_sampling,
        acc.process_index,
        acc.num_processes,
    )
    loader = DataLoader(
        XrayDataset(data, cfg.seed, cfg.augmentation()),
        batch_sampler=sampler,
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
    )
    bar = tqdm(
        total=cfg.max_steps,
        initial=start,
        desc=stage,
        unit="step",
        disable=not (progress and acc.is_main_process),
    )
    if start >= cfg.max_steps:
        log.info("checkpoint step %d >= max_steps %d: nothing left to train", start, cfg.max_steps)
    else:
        log.info(
            "%s: %d training images, classes %s, steps %d..%d, batch %d on %s (%s, %d process(es))",
            stage,
            len(data),
            list(data.classes),
            start,
            cfg.max_steps,
            cfg.batch_size,
            device,
            acc.mixed_precision,
            acc.num_processes,
        )

    step = start
    forward.train()
    interval: dict[str, Any] = {"n": 0, "loss": 0.0, "stats": {}, "t0": time.perf_counter()}
    for images, labels in loader:
        torch.manual_seed(derive_seed(cfg.seed, Purpose.FORWARD, step, acc.process_index))
        images = images.to(device, non_blocking=True)
        if cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        ctx = StepContext(
            step, generator(cfg.seed, Purpose.STEP, step), cfg.batch_size, sampler.local, device
        )
        with acc.autocast():
            loss, stats = loss_fn(forward, images, labels.to(device), ctx)
        acc.backward(loss)
        if cfg.grad_clip > 0:
            acc.clip_grad_norm_(prepared.parameters(), cfg.grad_clip)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        lr_schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.step(model.parameters())
        step += 1
        bar.update(1)

        interval["n"] += 1
        interval["loss"] = interval["loss"] + loss.detach().float()
        for k, v in stats.items():
            interval["stats"][k] = interval["stats"].get(k, 0.0) + v
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            n = interval["n"]
            mean = acc.reduce(torch.as_tensor(interval["loss"], device=device), "mean") / n
            elapsed = time.perf_counter() - interval["t0"]
            row = {
                "step": step,
                "loss": float(mean),
                "lr": float(lr),
                "images_per_s": n * cfg.batch_size / max(elapsed, 1e-9),
            }
            row |= {k: float(v) / n for k, v in interval["stats"].items()}
            rows.append(row)
            bar.set_postfix(loss=f"{row['loss']:.4f}", img_s=f"{row['images_per_s']:.1f}")
            interval = {"n": 0, "loss": 0.0, "stats": {}, "t0": time.perf_counter()}
        if step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
            if acc.is_main_process:
                ckpt.save(step, state_extra())
            acc.wait_for_everyone()
        if periodic is not None and step % periodic[0] == 0 and acc.is_main_process:
            periodic[1](step, averaged_copy(model, ema))
            forward.train()
    bar.close()
    acc.wait_for_everyone()
    return TrainOutcome(averaged_copy(model, ema), pd.DataFrame(rows), start, acc)
