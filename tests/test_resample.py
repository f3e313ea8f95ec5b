"""Starts and step hooks of stochastic re-noising, mask-stitch-resample and THOR, exactly."""

import numpy as np
import pytest
import torch

from cxrgen.counterfactual import resample
from cxrgen.counterfactual.ddim import decode, noised, trajectory
from cxrgen.diffusion.model import build_scheduler
from cxrgen.errors import ConfigError


@pytest.fixture
def traj():
    return trajectory(build_scheduler(1000, "linear"), 10, 0.5)


def test_image_noise_depends_on_seed_and_row_only():
    both = resample.image_noise(np.array([5, 7]), (6, 6), seed=3)
    alone = resample.image_noise(np.array([7]), (6, 6), seed=3)
    assert torch.equal(both[1], alone[0])  # no dependence on the batch
    assert not torch.equal(both[0], both[1])
    assert not torch.equal(resample.image_noise(np.array([7]), (6, 6), seed=4), alone)
    assert both.shape == (2, 1, 6, 6)


def test_implied_noise_recovers_the_noise_of_a_forward_state(traj):
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.rand(2, 1, 8, 8, generator=g) * 2 - 1, torch.randn(2, 1, 8, 8, generator=g)
    x_latent = resample.renoise_start(x0, eps, traj)
    torch.testing.assert_close(resample.implied_noise(x_latent, x0, traj), eps)


def test_stitch_hook_keeps_the_original_outside_the_mask(traj):
    """A predictor that always says eps = 0 would drift far from the image; with a half mask
    the decoded left half is the original exactly and the right half is not."""
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.rand(1, 1, 8, 8, generator=g) * 2 - 1, torch.randn(1, 1, 8, 8, generator=g)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 4:] = 1
    start = resample.renoise_start(x0, eps, traj)
    hook = resample.stitch_hook(mask, x0, eps, traj)
    out = decode(lambda x, t: torch.zeros_like(x), traj, start, step_hook=hook)
    assert torch.equal(out[..., :4], x0[..., :4].float())
    assert (out[..., 4:] - x0[..., 4:]).abs().min() > 1e-3
    # without a mask, the deterministic decode of the latent is untouched at every state
    calls = []
    plain = resample.stitch_hook(torch.ones_like(mask), x0, eps, traj)
    decode(lambda x, t: calls.append(t) or torch.zeros_like(x), traj, start, step_hook=plain)
    assert calls == list(reversed(traj.timesteps))


def test_harmonise_hook_blends_prediction_and_input_by_the_residual(traj):
    x0 = torch.zeros(1, 1, 8, 8)
    eps = torch.ones(1, 1, 8, 8)
    x0_hat = torch.zeros(1, 1, 8, 8)
    x0_hat[..., 2:6, 2:6] = 1.0  # a departure of 1 in a block; elsewhere agreement
    hook = resample.harmonise_hook(x0, eps, traj, {3}, residual_scale=1e-6, sigma_px=0)
    x = torch.full((1, 1, 8, 8), 7.0)
    assert torch.equal(hook(2, x, x0_hat), x)  # not a harmonised state: untouched
    out = hook(3, x, x0_hat)  # m = 1 where the prediction departs, 0 where it agrees
    torch.testing.assert_close(out, noised(x0_hat, eps, traj.alpha_bars[3]))
    half = resample.harmonise_hook(x0, eps, traj, {3}, residual_scale=2.0, sigma_px=0)
    blended = 0.5 * x0_hat  # m = 1 / 2 inside the block
    torch.testing.assert_close(half(3, x, x0_hat), noised(blended, eps, traj.alpha_bars[3]))
    assert resample.harmonised_states(10, 3) == {7, 4, 1}
    with pytest.raises(ConfigError, match="residual_scale"):
        resample.harmonise_hook(x0, eps, traj, {3}, 0.0, 1.0)


def test_mask_threshold_and_dilation_are_exact():
    maps = np.zeros((2, 9, 9), np.float32)
    maps[0, 4, 4] = 1.0
    maps[1] = np.arange(81).reshape(9, 9) / 81
    threshold = resample.mask_threshold(maps, 0.9)
    assert threshold == pytest.approx(np.quantile(maps, 0.9))
    mask = resample.first_pass_mask(maps[:1], 0.5, dilation_px=2)
    assert mask.sum() == 13  # a city-block ball of radius 2
    assert resample.first_pass_mask(maps[:1], 0.5, 0).sum() == 1
    with pytest.raises(ConfigError, match="mask_quantile"):
        resample.mask_threshold(maps, 1.0)


def test_gaussian_blur_keeps_a_constant_and_the_mass():
    x = torch.zeros(1, 1, 15, 15)
    x[0, 0, 7, 7] = 1.0
    blurred = resample.gaussian_blur(x, 1.5)
    assert blurred.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert blurred[0, 0, 7, 7] < 0.1
    torch.testing.assert_close(resample.gaussian_blur(torch.full((1, 1, 9, 9), 0.3), 2.0),
                               torch.full((1, 1, 9, 9), 0.3))  # fmt: skip
    assert torch.equal(resample.gaussian_blur(x, 0), x)
