"""What a model hands the training loop: its networks and one step, as a :class:`TrainSpec`.

A step receives the batch, a seeded random source and ``update``, and makes one or several
optimizer updates with it: the diffusion model and the classifier one ("model"); a GAN its
phases (discriminator, then generator), as stylegan2-ada's ``accumulate_gradients(phase)``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

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


@dataclass
class Batch:
    """One step's data on this process: images ``x`` (B, 1, H, W) in [-1, 1] with labels
    ``y``, and ``refs``: ``n_ref`` batches of reference images, all of the domains ``y_ref``."""

    x: torch.Tensor
    y: torch.Tensor
    refs: tuple[torch.Tensor, ...] = ()
    y_ref: torch.Tensor | None = None


class Update:
    """``update(loss, *names)``: zero every gradient, backward, clip, step the named optimizers.

    Gradients reaching networks that are not named are discarded at the next update.
    """

    def __init__(self, nets: Mapping[str, nn.Module], optimizers, grad_clip: float, accelerator):
        self.nets, self.optimizers = nets, optimizers
        self.grad_clip, self.accelerator = grad_clip, accelerator

    def __call__(self, loss: torch.Tensor, *names: str) -> None:
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        self.accelerator.backward(loss)
        for name in names:
            if self.grad_clip > 0:
                self.accelerator.clip_grad_norm_(self.nets[name].parameters(), self.grad_clip)
            self.optimizers[name].step()


StepFn = Callable[[Mapping[str, nn.Module], Batch, StepContext, Update, dict[str, float]], Stats]


@dataclass
class TrainSpec:
    """What a model hands the loop.

    nets: every trained network (each gets an optimizer of the config's RECIPE, see
        training/schedule).
    step: ``step(nets, batch, ctx, update, state) -> stats`` with the nets as the loop
        prepared them (device, processes); stats are scalars, logged as columns ("loss" first).
    keep: the networks that are the result; their EMA copies (warm-up (1+n)/(10+n) when the
        config's EMA_WARMUP, else the fixed beta of StarGAN v2) when its ema_decay > 0.
    lrs: learning rates that differ from ``cfg.lr`` (StarGAN v2's mapping network).
    state: loss weights that change over training; the step updates it in place and it is
        checkpointed. n_ref: reference images per sample (StarGAN v2's reference loader).
    """

    nets: dict[str, nn.Module]
    step: StepFn
    keep: tuple[str, ...]
    lrs: dict[str, float] = field(default_factory=dict)
    state: dict[str, float] = field(default_factory=dict)
    n_ref: int = 0


LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, StepContext], tuple[torch.Tensor, Stats]]


def single_loss(model: nn.Module, loss_fn: LossFn) -> TrainSpec:
    """The spec of a model trained on one loss ``loss_fn(model, images, labels, ctx)``."""

    def step(nets, batch: Batch, ctx: StepContext, update: Update, state) -> Stats:
        loss, stats = loss_fn(nets["model"], batch.x, batch.y, ctx)
        update(loss, "model")
        return {"loss": loss.detach(), **stats}

    return TrainSpec(nets={"model": model}, step=step, keep=("model",))


class EMA:
    """A moving average of ``model``'s parameters, kept as a module (``averaged``).

    ``warmup``: the decay of update n (0-based) is min(decay, (1 + n) / (10 + n)) and the first
    update copies, as diffusers' EMAModel; without it the fixed beta of StarGAN v2
    (``lerp(param, avg, beta)``). Buffers (normalisation statistics) are copied, not averaged.
    Written here rather than taken from diffusers' EMAModel because that one always warms up
    and keeps parameters only, while a GAN's averaged copy must be a whole module.
    """

    def __init__(self, model: nn.Module, decay: float, warmup: bool = False):
        self.model, self.decay, self.warmup = model, decay, warmup
        self.averaged = copy.deepcopy(model).eval().requires_grad_(False)
        self.updates = 0

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        n = self.updates
        return 0.0 if n == 0 else min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self) -> None:
        averaged = list(self.averaged.parameters())
        current = [p.detach() for p in self.model.parameters()]
        torch._foreach_lerp_(averaged, current, 1.0 - self.current_decay())
        for mine, theirs in zip(self.averaged.buffers(), self.model.buffers(), strict=True):
            mine.copy_(theirs)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"averaged": self.averaged.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.averaged.load_state_dict(state["averaged"])
        self.updates = int(state["updates"])


def averaged_copy(model: nn.Module, ema: EMA | None) -> nn.Module:
    """A copy of ``model`` holding the EMA weights (or its own), in eval mode."""
    source = model if ema is None else ema.averaged
    out = copy.deepcopy(source).to(memory_format=torch.contiguous_format)
    return out.eval().requires_grad_(False)
