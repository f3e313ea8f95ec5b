"""The DDIM move against diffusers' schedulers; the trajectory; exact round trips; filters."""

import numpy as np
import pytest
import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler

from cxrgen.counterfactual.ddim import ddim_move, decode, invert, trajectory
from cxrgen.diffusion.model import build_scheduler
from cxrgen.errors import ConfigError
from cxrgen.metrics.fourier import highpass, lowpass, radial_frequency


@pytest.fixture
def scheduler():
    return build_scheduler(1000, "linear")


def tensors(seed, shape=(3, 1, 8, 8)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g)


@pytest.mark.parametrize("clip", [False, True])
def test_move_down_equals_diffusers_ddim_step(scheduler, clip):
    ddim = DDIMScheduler.from_config(scheduler.config, clip_sample=clip)
    ddim.set_timesteps(20)
    bars = scheduler.alphas_cumprod
    x, eps = tensors(0)
    for t in ddim.timesteps.tolist():
        prev = t - 1000 // 20
        a_to = float(bars[prev]) if prev >= 0 else 1.0  # set_alpha_to_one
        theirs = ddim.step(eps, t, x, eta=0.0).prev_sample
        ours = ddim_move(x, eps, float(bars[t]), a_to, clip=clip)
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_move_up_equals_diffusers_inverse_step(scheduler):
    inverse = DDIMInverseScheduler.from_config(scheduler.config, clip_sample=False)
    inverse.set_timesteps(20)
    bars = scheduler.alphas_cumprod
    x, eps = tensors(1)
    for t in inverse.timesteps.tolist():
        start = t - 1000 // 20
        a_from = float(bars[start]) if start >= 0 else 1.0
        theirs = inverse.step(eps, t, x).prev_sample
        ours = ddim_move(x, eps, a_from, float(bars[t]))
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_trajectory_ends_at_depth_with_even_steps(scheduler):
    traj = trajectory(scheduler, 50, 0.5)
    assert traj.timesteps[-1] == 500 and traj.steps == 50
    assert np.all(np.diff(traj.timesteps) == 10)
    assert traj.alpha_bars[0] == 1.0
    assert traj.alpha_bars[-1] == pytest.approx(float(scheduler.alphas_cumprod[500]))
    assert traj.eval_timestep(0) == 0 and traj.eval_timestep(50) == 500
    assert trajectory(scheduler, 10, 1.0).timesteps[-1] == 999  # capped at T - 1
    assert trajectory(build_scheduler(100), 50, 0.5).timesteps[0] == 1
    with pytest.raises(ConfigError, match="do not fit"):
        trajectory(build_scheduler(100), 51, 0.5)


def test_round_trip_is_exact_when_eps_does_not_change(scheduler):
    """With a noise prediction that does not depend on (x, t) every move keeps x_0_hat: the
    only inexactness of real inversion is the model's eps changing along the path."""
    x0, fixed = tensors(2)
    traj = trajectory(scheduler, 25, 0.6)
    latent = invert(lambda x, t: fixed, traj, x0)
    assert not torch.allclose(latent, x0)
    torch.testing.assert_close(decode(lambda x, t: fixed, traj, latent), x0, atol=2e-5, rtol=0)


def test_noise_predictor_sees_the_trajectory_timesteps(scheduler):
    traj = trajectory(scheduler, 4, 0.4)
    seen = {"invert": [], "decode": []}

    def recorder(kind):
        def predict(x, t):
            seen[kind].append(t)
            return torch.zeros_like(x)

        return predict

    latent = invert(recorder("invert"), traj, torch.zeros(1, 1, 4, 4))
    decode(recorder("decode"), traj, latent)
    assert seen["invert"] == [0, 100, 200, 300]
    assert seen["decode"] == [400, 300, 200, 100]


def test_highpass_and_lowpass_split_the_spectrum():
    rng = np.random.default_rng(0)
    images = rng.standard_normal((2, 32, 24)).astype(np.float32)
    np.testing.assert_allclose(highpass(images, 0.3) + lowpass(images, 0.3), images, atol=1e-5)
    assert np.abs(highpass(np.full((16, 16), 3.0), 0.1)).max() < 1e-6  # DC removed
    stripes = np.tile([1.0, -1.0], (16, 8))  # Nyquist along x
    np.testing.assert_allclose(lowpass(stripes, 0.9), 0, atol=1e-6)
    np.testing.assert_allclose(highpass(stripes, 0.9), stripes, atol=1e-6)
    assert radial_frequency(8, 8)[0, 4] == pytest.approx(1.0)
