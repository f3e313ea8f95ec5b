"""Noise predictors for the DDIM samplers: plain conditional, classifier-free, classifier guided.

Each returns ``predict(x_t, t) -> eps`` for a batch; labels are fixed per batch when the
predictor is made. Model passes run under ``torch.no_grad`` locally; the classifier-guided
predictor takes its gradient under a local ``enable_grad`` (see ``log_prob_gradient``).
"""

from __future__ import annotations

import contextlib

import torch
from diffusers import UNet2DModel
from torch import nn

from cxrgen.classifier.model import log_prob_gradient
from cxrgen.counterfactual.ddim import NoisePredictor

PRECISIONS = ("fp32", "bf16")


def autocast(device: torch.device, precision: str):
    """bf16 autocast on CUDA when asked; float32 elsewhere (CPU bf16 is slower, not faster)."""
    if precision == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def null_label(unet: UNet2DModel) -> int:
    """The null class of classifier-free guidance: the last class embedding."""
    return int(unet.config.num_class_embeds) - 1


def conditional(unet: UNet2DModel, labels: torch.Tensor, precision: str = "fp32") -> NoisePredictor:
    """eps(x_t, y): no guidance (labels may be the null class)."""
    device = next(unet.parameters()).device
    labels = labels.to(device)

    def predict(x: torch.Tensor, t: int) -> torch.Tensor:
        with torch.no_grad(), autocast(device, precision):
            return unet(x, t, class_labels=labels).sample.float()

    return predict


def classifier_free(
    unet: UNet2DModel, labels: torch.Tensor, scale: float, precision: str = "fp32"
) -> NoisePredictor:
    """eps(x_t, y) + w (eps(x_t, y) - eps(x_t, null)), both passes as one batched forward."""
    device = next(unet.parameters()).device
    labels = labels.to(device)
    both_labels = torch.cat([labels, torch.full_like(labels, null_label(unet))])

    def predict(x: torch.Tensor, t: int) -> torch.Tensor:
        with torch.no_grad(), autocast(device, precision):
            both = unet(torch.cat([x, x]), t, class_labels=both_labels).sample.float()
        cond, uncond = both.chunk(2)
        return cond + scale * (cond - uncond)

    return predict


def classifier_guided(
    unet: UNet2DModel,
    classifier: nn.Module,
    alphas_cumprod: torch.Tensor,
    labels: torch.Tensor,
    targets: torch.Tensor,
    scale: float,
    precision: str = "fp32",
) -> NoisePredictor:
    """eps(x_t, y) - s sqrt(1 - alpha_bar_t) grad_x log p(target | x_t, t) (Dhariwal & Nichol).

    ``labels`` condition the UNet (usually the null class: guidance by the classifier alone);
    ``targets`` are the classes the classifier pulls toward. No gradient is taken at s = 0.
    """
    device = next(unet.parameters()).device
    plain = conditional(unet, labels, precision)
    targets = targets.to(device)

    def predict(x: torch.Tensor, t: int) -> torch.Tensor:
        eps = plain(x, t)
        if scale == 0:
            return eps
        with autocast(device, precision):
            grad = log_prob_gradient(classifier, x, t, targets).float()
        return eps - scale * float(1 - alphas_cumprod[t]) ** 0.5 * grad

    return predict
