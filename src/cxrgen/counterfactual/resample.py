"""Stochastic re-noising, mask-stitch-resample and harmonised decoding: starts and step hooks.

Every method decodes through the one DDIM loop (:func:`cxrgen.counterfactual.ddim.decode`);
what differs is where it starts and what a :data:`~cxrgen.counterfactual.ddim.StepHook`
does after each move:

* ``renoise`` (stochastic re-noising; AnoDDPM's Gaussian variant): the start is the image
  pushed forward to depth L with fresh Gaussian noise, q(x_L | x_0), instead of its DDIM
  latent, so the lesion is not encoded into the start exactly; no hook.
* ``msr`` (mask, stitch and re-sample; autoDDPM, Bercea et al. 2023, Dif-fuse, Fontanella et
  al. 2024): a first-pass anomaly map (the removed part of another method's difference) is
  smoothed and thresholded into a dilated mask; inside it the image is re-sampled from fresh
  noise toward the target class, outside it every state is replaced by the original's own
  state at that step (:func:`stitch_hook`), so the two are blended at every step and the
  last state outside the mask is the original itself.
* ``thor`` (harmonised decoding; THOR, Bercea et al. 2023): at a few states the predicted
  clean image is pulled back to the input wherever its residual is small, ``x0' = m x0_hat +
  (1 - m) x``, with ``m`` the smoothed residual over ``residual_scale`` clipped to [0, 1],
  and re-noised with the start's noise (:func:`harmonise_hook`).

Noise is drawn per image from a generator seeded by (seed, store row), so the result does
not depend on the batch size or on any label; the original's noise in ``msr`` / ``thor`` is
the one its DDIM latent implies (:func:`implied_noise`), so without a mask ``msr`` is exactly
the deterministic decode.

Simplex noise (AnoDDPM) is not offered: it needs a model trained to remove simplex noise, and
the demo's model is trained on Gaussian noise.

Written here rather than taken from a library: diffusers' inpainting and RePaint pipelines
drive their own schedulers over the whole noise schedule; these are small hooks on the
project's depth-L trajectory.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from cxrgen.config import check
from cxrgen.counterfactual.ddim import StepHook, Trajectory, noised

# methods that start from fresh per-image noise rather than the DDIM latent alone
STOCHASTIC = ("renoise", "msr")


def image_noise(store_rows: np.ndarray, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Standard normal noise (B, 1, H, W), image i's drawn from seed (seed, store_rows[i])."""
    out = torch.empty((len(store_rows), 1, *shape))
    for i, row in enumerate(np.asarray(store_rows, dtype=np.int64)):
        gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(row))
        out[i, 0] = torch.randn(shape, generator=gen)
    return out


def implied_noise(x_latent: torch.Tensor, x0: torch.Tensor, traj: Trajectory) -> torch.Tensor:
    """The eps with x_L = sqrt(a_L) x_0 + sqrt(1 - a_L) eps: the noise the DDIM latent holds."""
    a = traj.alpha_bars[-1]
    return (x_latent.float() - a**0.5 * x0.float()) / (1 - a) ** 0.5


def renoise_start(x0: torch.Tensor, eps: torch.Tensor, traj: Trajectory) -> torch.Tensor:
    """q(x_L | x_0) with the given noise: the start of stochastic re-noising."""
    return noised(x0, eps, traj.alpha_bars[-1])


def gaussian_blur(x: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, 1, H, W) with reflected borders (identity at sigma 0).

    In torch rather than scipy's gaussian_filter (used for the first-pass maps): THOR blurs
    inside the decoding loop, on the model's device.
    """
    if sigma_px <= 0:
        return x
    radius = max(1, int(np.ceil(3 * sigma_px)))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(taps**2) / (2 * sigma_px**2))
    kernel = (kernel / kernel.sum()).to(x.device)
    x = F.pad(x, (radius,) * 4, mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    return F.conv2d(x, kernel.view(1, 1, -1, 1))


def smoothed_removed(diff: np.ndarray, sigma_px: float) -> np.ndarray:
    """The first-pass map: the positive part of original - counterfactual, Gaussian-smoothed
    over the two image axes of (B, H, W)."""
    removed = np.clip(np.asarray(diff, dtype=np.float32), 0, None)
    if sigma_px <= 0:
        return removed
    return ndimage.gaussian_filter(removed, (0, sigma_px, sigma_px), mode="reflect")


def mask_threshold(calibration_maps: np.ndarray, quantile: float) -> float:
    """The mask threshold: a quantile of every calibration image's first-pass map, pooled.

    Label-free: the calibration images' labels are not read, so permuting them changes
    nothing; the quantile is the share of calibration pixels left outside the mask.
    """
    check(0 < quantile < 1, f"mask_quantile must be in (0, 1), got {quantile}")
    check(len(calibration_maps) > 0, "no calibration image to set the mask threshold on")
    return float(np.quantile(np.asarray(calibration_maps, dtype=np.float32), quantile))


def first_pass_mask(maps: np.ndarray, threshold: float, dilation_px: int) -> np.ndarray:
    """Boolean (B, H, W): the first-pass map above ``threshold``, dilated by ``dilation_px``."""
    mask = np.asarray(maps) > threshold
    if dilation_px > 0 and mask.any():
        ball = ndimage.generate_binary_structure(2, 1)
        mask = np.stack([ndimage.binary_dilation(m, ball, iterations=dilation_px) for m in mask])
    return mask


def stitch_hook(
    mask: torch.Tensor, x0: torch.Tensor, eps_known: torch.Tensor, traj: Trajectory
) -> StepHook:
    """Keep the re-sampled state inside ``mask`` (B, 1, H, W in {0, 1}) and the original's
    state q(x_s | x_0) with its own noise outside it, after every move."""
    inside = mask.float()

    def hook(state: int, x: torch.Tensor, x0_hat: torch.Tensor) -> torch.Tensor:
        known = noised(x0, eps_known, traj.alpha_bars[state])
        return inside * x + (1 - inside) * known

    return hook


def harmonise_hook(
    x0: torch.Tensor,
    eps: torch.Tensor,
    traj: Trajectory,
    states: set[int],
    residual_scale: float,
    sigma_px: float,
) -> StepHook:
    """THOR's harmonisation at ``states``: x0' = m x0_hat + (1 - m) x_0, re-noised with eps.

    m = clip(blur(|x0_hat - x_0|) / residual_scale, 0, 1) in [-1, 1] image units: where the
    prediction agrees with the input, the input is kept; where it departs, the prediction.
    """
    check(residual_scale > 0, f"residual_scale must be > 0, got {residual_scale}")

    def hook(state: int, x: torch.Tensor, x0_hat: torch.Tensor) -> torch.Tensor:
        if state not in states or state == 0:
            return x
        m = (gaussian_blur((x0_hat - x0).abs(), sigma_px) / residual_scale).clamp(0, 1)
        return noised(m * x0_hat + (1 - m) * x0, eps, traj.alpha_bars[state])

    return hook


def start_and_hook(
    method: str,
    x0: torch.Tensor,
    x_latent: torch.Tensor,
    traj: Trajectory,
    fresh: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    harmonise_every: int = 3,
    residual_scale: float = 0.2,
    sigma_px: float = 0.0,
) -> tuple[torch.Tensor, StepHook | None]:
    """Where a method's decoding starts and its step hook (cfg / cg: the latent, no hook).

    ``fresh``: the per-image noise of renoise and msr (:func:`image_noise`); ``mask``: msr's
    (B, 1, H, W) mask in {0, 1} (fresh noise inside it, the latent outside it).
    """
    if method in STOCHASTIC:
        check(fresh is not None, f"method {method!r} needs fresh noise")
        start = renoise_start(x0, fresh, traj)
        if method == "renoise":
            return start, None
        check(mask is not None, "method 'msr' needs its mask")
        mask = mask.float()
        start = mask * start + (1 - mask) * x_latent
        return start, stitch_hook(mask, x0, implied_noise(x_latent, x0, traj), traj)
    if method == "thor":
        states = harmonised_states(traj.steps, harmonise_every)
        known = implied_noise(x_latent, x0, traj)
        return x_latent, harmonise_hook(x0, known, traj, states, residual_scale, sigma_px)
    return x_latent, None


def harmonised_states(steps: int, every: int) -> set[int]:
    """The states THOR harmonises at: every ``every``-th state below the start, above 0."""
    check(every >= 1, f"harmonise_every must be >= 1, got {every}")
    return set(range(steps - every, 0, -every))
