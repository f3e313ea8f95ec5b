"""Grad-CAM (Selvaraju et al. 2017) of the noise-aware classifier: where it sees a class.

``grad_cam(classifier, images, target_label)`` weights each channel of one layer's activation
A (default: the classifier's mid block, its last spatial feature map before pooling) by the
spatial mean of d logit[target] / dA, sums the weighted channels, keeps the positive part,
upsamples it bilinearly to the image size and divides each map by its maximum, so every map
lies in [0, 1] (a map with no positive evidence stays all zero).

Written here rather than imported: the project's lock holds no Grad-CAM library
(pytorch-grad-cam is not a dependency) and the method is a forward hook, one
``torch.autograd.grad`` call and a weighted sum, about twenty lines.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cxrgen.config import check
from cxrgen.errors import DataError


def default_layer(classifier: nn.Module) -> nn.Module:
    """The classifier's mid block, else its last down block: the last spatial feature map."""
    if isinstance(getattr(classifier, "mid_block", None), nn.Module):
        return classifier.mid_block
    blocks = getattr(classifier, "down_blocks", None)
    if isinstance(blocks, nn.ModuleList) and len(blocks):
        return blocks[-1]
    raise DataError(
        f"{type(classifier).__name__} has no mid_block or down_blocks: pass the layer explicitly"
    )


def grad_cam(
    classifier: nn.Module,
    images,
    target_label: int | Sequence[int] | np.ndarray,
    layer: nn.Module | None = None,
    t: int = 0,
    batch_size: int = 64,
) -> np.ndarray:
    """Grad-CAM maps (B, H, W) float32 in [0, 1] of ``target_label`` for ``images``.

    ``images``: float (B, H, W) in [0, 1], array-like (read ``batch_size`` rows at a time),
    scaled to [-1, 1] as the classifier was trained and evaluated at timestep ``t``.
    ``target_label``: one class index for all images or one per image; the score is the
    class's logit (before the softmax, as in the paper). ``layer``: a module whose output
    (or first output, for a down block's (hidden, residuals) tuple) is (B, C, h, w); default
    :func:`default_layer`. Each image's map depends only on that image (the classifier has no
    batch coupling in eval mode), so the result does not depend on ``batch_size``.

    The classifier runs in eval mode and is put back in its own mode afterwards; its
    parameters' ``requires_grad`` flags are not touched (the gradient flows from the input,
    which is made to require grad) and no ``.grad`` is accumulated.
    """
    check(batch_size >= 1, f"batch_size must be >= 1, got {batch_size}")
    if len(np.shape(images)) != 3:
        raise DataError(f"images must be (B, H, W), got shape {np.shape(images)}")
    n, height, width = np.shape(images)
    labels = np.broadcast_to(np.asarray(target_label, dtype=np.int64), (n,))
    num_classes = getattr(classifier, "num_classes", None)
    if num_classes is not None and n:
        check(
            0 <= labels.min() and labels.max() < num_classes,
            f"target_label must be in [0, {num_classes}), got {sorted(set(labels.tolist()))}",
        )
    layer = default_layer(classifier) if layer is None else layer
    param = next(classifier.parameters())
    captured: list[torch.Tensor] = []

    def keep_output(module, inputs, output):
        captured.append(output[0] if isinstance(output, tuple) else output)

    handle = layer.register_forward_hook(keep_output)
    was_training = classifier.training
    classifier.eval()
    out = np.zeros((n, height, width), np.float32)
    try:
        with torch.enable_grad():
            for start in range(0, n, batch_size):
                batch = np.asarray(images[start : start + batch_size], dtype=np.float32)
                if batch.min() < 0 or batch.max() > 1 or np.isnan(batch).any():
                    raise DataError(f"images must be in [0, 1]; rows from {start} are not")
                x = torch.from_numpy(batch).to(param.device, param.dtype).unsqueeze(1) * 2 - 1
                x.requires_grad_(True)
                captured.clear()
                logits = classifier(x, t).float()
                if len(captured) != 1 or captured[0].ndim != 4:
                    raise DataError("the Grad-CAM layer must run once and give (B, C, h, w)")
                activation = captured[0]
                target = torch.from_numpy(labels[start : start + len(batch)].copy())
                score = logits.gather(1, target.to(logits.device).reshape(-1, 1)).sum()
                (grads,) = torch.autograd.grad(score, activation)
                weights = grads.float().mean(dim=(2, 3), keepdim=True)
                cam = torch.relu((weights * activation.detach().float()).sum(1, keepdim=True))
                cam = F.interpolate(
                    cam, size=(height, width), mode="bilinear", align_corners=False
                )[:, 0]
                peak = cam.amax(dim=(1, 2), keepdim=True)
                cam = torch.where(peak > 0, cam / peak.clamp_min(1e-30), torch.zeros_like(cam))
                out[start : start + len(batch)] = cam.clamp(0, 1).cpu().numpy()
    finally:
        handle.remove()
        classifier.train(was_training)
    return out
