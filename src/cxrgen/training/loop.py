"""The one training loop every model uses: accelerate, optimizers per network, EMA, resumable.

A model contributes a :class:`~cxrgen.training.step.TrainSpec` (its networks and one step that
makes one or several optimizer updates); the loop does the rest: devices, processes and mixed
precision (accelerate), the step-keyed data order and augmentation (with reference images for
StarGAN v2), gradient clipping, the learning-rate schedules, EMA, checkpoints every N steps
(resuming from the newest one), the loss table and the progress bar; :func:`train_and_write`
adds the outputs every model folder holds.

Determinism: the data of step s, the generator handed to the step (``ctx``), the reference
draw and the global torch RNG during the step (dropout) are all seeded from (seed, s); loss
weights that change over training live in ``state``, which is checkpointed. A resumed run
therefore ends with exactly the weights of an uninterrupted one (bit-for-bit on CPU; on GPU
up to non-deterministic kernels).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, PartialState
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from cxrgen import provenance
from cxrgen.config import check
from cxrgen.data.classes import write_classes
from cxrgen.data.store import SplitImages
from cxrgen.errors import ConfigError
from cxrgen.plotting import write_loss
from cxrgen.training.checkpoint import Checkpointer, latest_checkpoint, peek_extra, set_aside
from cxrgen.training.data import ReferenceBatchSampler, StepBatchSampler, XrayDataset
from cxrgen.training.loop_config import RESUMABLE_CHANGES, TrainLoopConfig
from cxrgen.training.schedule import make_lr_schedule, make_optimizer
from cxrgen.training.seeding import Purpose, derive_seed, generator
from cxrgen.training.step import EMA, Batch, StepContext, TrainSpec, Update, averaged_copy

log = logging.getLogger(__name__)


@dataclass
class TrainOutcome:
    nets: dict[str, nn.Module]  # spec.keep: EMA weights (or the last ones), eval mode, on device
    history: pd.DataFrame  # one row per logging interval: step, (loss,) lr, images_per_s, stats
    start_step: int  # 0, or the step resumed from
    state: dict[str, float]  # the final value of every changing loss weight
    accelerator: Accelerator

    @property
    def model(self) -> nn.Module:
        """The one result of a single-loss spec."""
        return self.nets["model"]


def seeded(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    """Build a model with its initial weights drawn from ``seed`` (global RNG left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, Purpose.FORWARD, 2**32))
        return build()


def make_accelerator(cfg: TrainLoopConfig) -> Accelerator:
    cpu = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())
    check(cfg.device != "cuda" or torch.cuda.is_available(), "device is 'cuda' but no GPU is seen")
    precision = cfg.precision(cpu)
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
            "max_steps changed from %s to %d: the learning-rate schedule is stretched from "
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


def _batch(images: torch.Tensor, labels: torch.Tensor, b: int, n_ref: int) -> Batch:
    refs = tuple(images[b * (1 + r) : b * (2 + r)] for r in range(n_ref))
    return Batch(images[:b], labels[:b], refs, labels[b : 2 * b] if n_ref else None)


def _row(step: int, interval: dict[str, Any], lr: float, b: int, acc: Accelerator) -> dict:
    """A loss-table row: step, loss, lr, images/s, the other stats (process means), state."""
    n, elapsed = interval["n"], time.perf_counter() - interval["t0"]
    names = list(interval["stats"])
    means = {}
    if names:
        sums = [torch.as_tensor(interval["stats"][k], device=acc.device) for k in names]
        reduced = acc.reduce(torch.stack(sums).float(), "mean") / n
        means = dict(zip(names, reduced.tolist(), strict=True))
    row: dict[str, float] = {"step": step}
    if "loss" in means:
        row["loss"] = means.pop("loss")
    row |= {"lr": float(lr), "images_per_s": n * b / max(elapsed, 1e-9)}
    return row | means | interval["state"]


def run_training(
    spec: TrainSpec,
    data: SplitImages,
    checkpoint_dir: str | Path,
    cfg: TrainLoopConfig,
    *,
    stage: str,
    progress: bool = True,
    periodic: tuple[int, Callable[[int, dict[str, nn.Module]], None]] | None = None,
) -> TrainOutcome:
    """Train ``spec`` on ``data``, resuming from / saving checkpoints in ``checkpoint_dir``.

    ``periodic = (every, fn)`` calls ``fn(step, averaged_nets)`` on the main process every
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
    device, memory_format = acc.device, torch.preserve_format
    if cfg.channels_last:
        memory_format = torch.channels_last
    for net in spec.nets.values():
        net.to(device, memory_format=memory_format).train()
    optimizers = {
        name: make_optimizer(net.parameters(), cfg, spec.lrs.get(name))
        for name, net in spec.nets.items()
    }
    schedules = {n: make_lr_schedule(o, cfg) for n, o in optimizers.items()}
    emas = {}
    if cfg.ema_decay:
        emas = {n: EMA(spec.nets[n], cfg.ema_decay, cfg.EMA_WARMUP) for n in spec.keep}
    set_aside_if_incompatible(Path(checkpoint_dir), cfg)
    objects: dict[str, Any] = dict(spec.nets)
    objects |= {f"ema_{n}": e for n, e in emas.items()}
    objects |= {f"optimizer_{n}": o for n, o in optimizers.items()}
    objects |= {f"lr_schedule_{n}": s for n, s in schedules.items()}
    ckpt = Checkpointer(checkpoint_dir, keep=cfg.keep_checkpoints, scaler=acc.scaler, **objects)
    restored = ckpt.restore_latest()
    start, extra = restored if restored else (0, {})
    state = dict(spec.state)
    if restored:
        _resume_check(extra, cfg, data)
        state.update(extra.get("state", {}))
    rows: list[dict[str, float]] = list(extra.get("history", []))

    names = list(spec.nets)
    prepared = acc.prepare(*spec.nets.values(), *optimizers.values())
    nets = dict(zip(names, prepared[: len(names)], strict=True))
    optimizers = dict(zip(names, prepared[len(names) :], strict=True))
    if cfg.compile:
        nets = {n: torch.compile(m) for n, m in nets.items()}
    update = Update(nets, optimizers, cfg.grad_clip, acc)
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
        batch_sampler=ReferenceBatchSampler(sampler, data.labels, spec.n_ref, cfg.seed)
        if spec.n_ref
        else sampler,
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

    def averaged() -> dict[str, nn.Module]:
        return {n: averaged_copy(spec.nets[n], emas.get(n)) for n in spec.keep}

    b_local = len(range(cfg.batch_size)[sampler.local])
    step = start
    interval: dict[str, Any] = {"n": 0, "stats": {}, "t0": time.perf_counter()}
    for images, labels in loader:
        torch.manual_seed(derive_seed(cfg.seed, Purpose.FORWARD, step, acc.process_index))
        images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        batch = _batch(images, labels.to(device, non_blocking=True), b_local, spec.n_ref)
        ctx = StepContext(
            step, generator(cfg.seed, Purpose.STEP, step), cfg.batch_size, sampler.local, device
        )
        used, lr = dict(state), optimizers[names[0]].param_groups[0]["lr"]
        with acc.autocast():
            stats = spec.step(nets, batch, ctx, update, state)
        for schedule in schedules.values():
            schedule.step()
        for ema in emas.values():
            ema.update()
        step += 1
        bar.update(1)

        interval["n"] += 1
        for k, v in stats.items():
            v = v.detach() if isinstance(v, torch.Tensor) else v
            interval["stats"][k] = interval["stats"].get(k, 0.0) + v
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            row = _row(step, interval | {"state": used}, lr, cfg.batch_size, acc)
            rows.append(row)
            shown = {k: f"{v:.4g}" for k, v in row.items() if k not in ("step", "lr")}
            bar.set_postfix(shown, refresh=False)
            interval = {"n": 0, "stats": {}, "t0": time.perf_counter()}
        if step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
            if acc.is_main_process:
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
            acc.wait_for_everyone()
        if periodic is not None and step % periodic[0] == 0 and acc.is_main_process:
            periodic[1](step, averaged())
    bar.close()
    acc.wait_for_everyone()
    return TrainOutcome(averaged(), pd.DataFrame(rows), start, state, acc)


def train_and_write(
    spec: TrainSpec,
    data: SplitImages,
    out_dir: Path,
    cfg: TrainLoopConfig,
    *,
    stage: str,
    title: str,
    save: Callable[[TrainOutcome], Mapping[str, Any] | None],
    write_samples: Callable[[Path, Mapping[str, nn.Module]], None] | None = None,
    checkpoint_dir: Path | None = None,
    provenance_extra: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> TrainOutcome:
    """Train with :func:`run_training`, then write what every model folder holds.

    ``save(outcome)`` writes the model's own files and may return more provenance entries;
    then ``classes.json``, the loss table and curve, ``samples.png`` (and
    ``samples/step-N.png`` every ``cfg.sample_every`` steps) when ``write_samples`` is given,
    and ``provenance.json`` (with the final value of every changing weight in ``spec.state``).
    Only the main process writes. Checkpoints go to ``checkpoint_dir`` (default
    ``out_dir/checkpoints``).
    """
    every = getattr(cfg, "sample_every", 0)
    periodic = None
    if every and write_samples is not None:
        periodic = (
            every,
            lambda step, avg: write_samples(out_dir / "samples" / f"step-{step:08d}.png", avg),
        )
    checkpoint_dir = out_dir / "checkpoints" if checkpoint_dir is None else checkpoint_dir
    outcome = run_training(
        spec, data, checkpoint_dir, cfg, stage=stage, progress=progress, periodic=periodic
    )
    if not outcome.accelerator.is_main_process:
        return outcome
    entries = dict(save(outcome) or {})
    write_classes(out_dir / "classes.json", list(data.classes))
    write_loss(out_dir, outcome.history, title)
    if write_samples is not None:
        write_samples(out_dir / "samples.png", outcome.nets)
    provenance.write(
        out_dir / "provenance.json",
        stage,
        cfg,
        classes=list(data.classes),
        class_counts=data.class_counts().tolist(),
        image_size=[data.height, data.width],
        resumed_from_step=outcome.start_step,
        device=str(outcome.accelerator.device),
        mixed_precision=outcome.accelerator.mixed_precision,
        processes=outcome.accelerator.num_processes,
        **{f"final_{k}": v for k, v in outcome.state.items()},
        **dict(provenance_extra or {}),
        **entries,
    )
    log.info("wrote %s model to %s", stage.removeprefix("train_"), out_dir)
    return outcome
