"""Deterministic DDIM (sigma = 0) between a clean image and a latent at depth L, both ways.

The trajectory visits the states x(tau_0) = x_0 (the image, alpha_bar = 1), x(tau_1), ...,
x(tau_S) = x_L at DDPM timesteps 0 <= tau_1 < ... < tau_S = L evenly spaced. One DDIM move
from a state at alpha_bar a to one at alpha_bar b with noise prediction eps is

    x_0_hat = (x - sqrt(1 - a) eps) / sqrt(a),   x' = sqrt(b) x_0_hat + sqrt(1 - b) eps,

the same formula upward (inversion) and downward (decoding). ``tests/test_ddim.py`` shows it
equal to ``DDIMScheduler.step`` (eta = 0, clip_sample off) and ``DDIMInverseScheduler.step``.

Why not drive those schedulers directly: they space their steps over the whole schedule
(timesteps k * T / n) and the inverse one always runs to T, while Wolleb et al.'s inversion
stops at a depth L (e.g. 500 of 1000) with its own number of steps. The move is the same.

Inversion evaluates eps at the state it leaves, ``eps(x(tau_i), tau_i)`` (tau_0 = timestep 0
for the image); decoding evaluates it at the state it leaves too, ``eps(x(tau_{i+1}),
tau_{i+1})``. The two differ by one step of the trajectory: that mismatch, not arithmetic, is
what keeps the reconstruction of a latent from being exact (it shrinks with more steps).

The samplers are pure functions of (noise predictor, schedule, x): no global ``no_grad`` (the
classifier-guided predictor takes a gradient inside), no randomness.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers import DDPMScheduler
from tqdm.auto import tqdm

from cxrgen.config import check

# eps(x_t, t) for a batch at one DDPM timestep t (an int); guidance lives inside it.
NoisePredictor = Callable[[torch.Tensor, int], torch.Tensor]
# step_hook(state, x, x0_hat) -> x: called after each decoding move with the state reached
# (S - 1 ... 0), the new x and the x_0 prediction the move made; it returns the x to go on
# from. Mask-stitch-resample and harmonised decoding live in hooks (counterfactual/resample.py).
StepHook = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Trajectory:
    """The DDPM timesteps tau_1 < ... < tau_S and alpha_bar of states 0..S (state 0: 1.0)."""

    timesteps: tuple[int, ...]
    alpha_bars: tuple[float, ...]

    @property
    def steps(self) -> int:
        return len(self.timesteps)

    @property
    def depth_timestep(self) -> int:
        return self.timesteps[-1]

    def eval_timestep(self, state: int) -> int:
        """The timestep the noise predictor is told at ``state`` (0 for the clean image)."""
        return 0 if state == 0 else self.timesteps[state - 1]


def trajectory(scheduler: DDPMScheduler, steps: int, depth: float) -> Trajectory:
    """``steps`` evenly spaced DDPM timesteps ending at L = round(depth * T) (at most T - 1)."""
    total = int(scheduler.config.num_train_timesteps)
    check(0 < depth <= 1, f"depth must be in (0, 1], got {depth}")
    check(steps >= 1, f"steps must be >= 1, got {steps}")
    last = min(round(depth * total), total - 1)
    check(
        steps <= last,  # tau_1 >= 1: timestep 0 belongs to the clean image alone
        f"{steps} DDIM steps do not fit in depth {depth} of {total} timesteps (L = {last}); "
        f"use at most {last} steps or a larger depth",
    )
    taus = [round(last * (i + 1) / steps) for i in range(steps)]
    check(len(set(taus)) == steps, f"{steps} steps to timestep {last} repeat a timestep")
    bars = scheduler.alphas_cumprod.double()
    return Trajectory(tuple(taus), (1.0, *(float(bars[t]) for t in taus)))


def predict_x0(
    x: torch.Tensor, eps: torch.Tensor, a_from: float, clip: bool = False
) -> torch.Tensor:
    """x_0_hat of a state at alpha_bar ``a_from`` (clamped to [-1, 1] with ``clip``)."""
    x0 = (x.float() - (1 - a_from) ** 0.5 * eps.float()) / a_from**0.5
    return x0.clamp(-1, 1) if clip else x0


def noised(x0: torch.Tensor, eps: torch.Tensor, a: float) -> torch.Tensor:
    """The state at alpha_bar ``a`` with clean part ``x0`` and noise ``eps``: q(x_t | x_0)."""
    return a**0.5 * x0.float() + (1 - a) ** 0.5 * eps.float()


def ddim_move(
    x: torch.Tensor, eps: torch.Tensor, a_from: float, a_to: float, clip: bool = False
) -> torch.Tensor:
    """One deterministic DDIM move from alpha_bar ``a_from`` to ``a_to`` (either direction).

    ``clip`` clamps x_0_hat to [-1, 1] and keeps eps, as ``DDIMScheduler`` with clip_sample.
    """
    return noised(predict_x0(x, eps, a_from, clip), eps, a_to)


def invert(
    predict: NoisePredictor, traj: Trajectory, x0: torch.Tensor, progress: bool = False
) -> torch.Tensor:
    """Encode clean images ``x0`` (B, C, H, W) in [-1, 1] to their latents at depth L."""
    x = x0.float()
    for i in tqdm(range(traj.steps), desc="invert", leave=False, disable=not progress):
        eps = predict(x, traj.eval_timestep(i))
        x = ddim_move(x, eps, traj.alpha_bars[i], traj.alpha_bars[i + 1])
    return x


def decode(
    predict: NoisePredictor,
    traj: Trajectory,
    x_latent: torch.Tensor,
    clip_denoised: bool = False,
    progress: bool = False,
    step_hook: StepHook | None = None,
) -> torch.Tensor:
    """Decode latents at depth L back to images (unclamped; ``clip_denoised`` clips x_0_hat).

    ``step_hook`` (see :data:`StepHook`) may replace the state after every move; without it
    this is plain deterministic DDIM decoding.
    """
    x = x_latent.float()
    for i in tqdm(range(traj.steps, 0, -1), desc="decode", leave=False, disable=not progress):
        eps = predict(x, traj.eval_timestep(i))
        x0 = predict_x0(x, eps, traj.alpha_bars[i], clip_denoised)
        x = noised(x0, eps, traj.alpha_bars[i - 1])
        if step_hook is not None:
            x = step_hook(i - 1, x, x0)
    return x
