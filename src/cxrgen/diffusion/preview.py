"""Preview samples of a trained model: class-conditional DDIM from fixed per-sample seeds.

The samples go through the counterfactual stage's own DDIM loop (:func:`ddim.decode` over a
trajectory to depth 1) with its classifier-free guidance predictor, so the preview shows what
that loop makes of the model. Each sample's initial noise has its own seeded generator, so a
sample does not depend on how many are drawn together.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from diffusers import DDPMScheduler, UNet2DModel

from cxrgen.counterfactual import ddim
from cxrgen.counterfactual.guidance import classifier_free, conditional
from cxrgen.training.seeding import Purpose, derive_seed


def ddim_sample(
    unet: UNet2DModel,
    scheduler: DDPMScheduler,
    labels: torch.Tensor,
    seeds: Sequence[int],
    num_inference_steps: int = 50,
    guidance_scale: float = 0.0,
) -> torch.Tensor:
    """Deterministic DDIM samples in [-1, 1] for ``labels``, noise seeded per sample.

    ``guidance_scale`` w > 0 applies classifier-free guidance
    eps = eps(x, y) + w (eps(x, y) - eps(x, null)), null = num_class_embeds - 1.
    """
    device = next(unet.parameters()).device
    size = unet.config.sample_size
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    shape = (unet.config.in_channels, h, w)
    x = torch.stack(
        [torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
    ).to(device)
    if guidance_scale:
        predict = classifier_free(unet, labels, guidance_scale)
    else:
        predict = conditional(unet, labels)
    traj = ddim.trajectory(scheduler, num_inference_steps, 1.0)
    return ddim.decode(predict, traj, x, clip_denoised=True).clamp(-1, 1)


def class_grid(
    unet: UNet2DModel,
    scheduler: DDPMScheduler,
    num_classes: int,
    per_class: int,
    seed: int,
    num_inference_steps: int = 50,
    guidance_scale: float = 0.0,
) -> np.ndarray:
    """(K, per_class, H, W) samples in [0, 1]: row k is class k; seeds fixed by (seed, k, j)."""
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    seeds = [
        derive_seed(seed, Purpose.SAMPLE, k, j)
        for k in range(num_classes)
        for j in range(per_class)
    ]
    x = ddim_sample(unet, scheduler, labels, seeds, num_inference_steps, guidance_scale)
    x = (x[:, 0].float().cpu().numpy() + 1) / 2
    return x.reshape(num_classes, per_class, *x.shape[1:])
