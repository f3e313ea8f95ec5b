"""LPIPS diversity (StarGAN v2): the mean pairwise LPIPS among the outputs of one source image.

The outputs of one source image for one target domain (``num_outs_per_domain`` of them) are
compared pairwise (all i < j) with ``lpips.LPIPS(net='alex')``; grey images are repeated to
3 channels and scaled to [-1, 1] (lpips' own scaling layer then applies the ImageNet
normalisation StarGAN v2's ``metrics/lpips.py`` also uses), and images smaller than
``min_size`` are upsampled bilinearly first (AlexNet's pooling needs about 32 px).
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cxrgen.metrics.fid import unit_batches

LPIPS_NETWORK = "lpips v0.1 alexnet"


class PairwiseLPIPS:
    """``diversity(x)`` for x (n, 1, H, W) in [0, 1] -> mean LPIPS over the n(n-1)/2 pairs."""

    def __init__(self, net: nn.Module, device: torch.device, min_size: int = 64, batch=50):
        self.net, self.device = net.to(device).eval(), device
        self.min_size, self.batch = min_size, batch

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, torch.float32)
        h, w = x.shape[-2:]
        if min(h, w) < self.min_size:
            f = self.min_size / min(h, w)
            size = (round(h * f), round(w * f))
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return (x * 2 - 1).expand(-1, 3, -1, -1)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> float:
        if len(x) < 2:
            return float("nan")
        x = self._prepare(x)
        pairs = np.array(list(itertools.combinations(range(len(x)), 2)))
        values = []
        for start in range(0, len(pairs), self.batch):
            i, j = pairs[start : start + self.batch].T
            values.append(self.net(x[i], x[j]).flatten().double())
        return float(torch.cat(values).mean())


def diversity_per_group(
    metric: PairwiseLPIPS, array: np.ndarray, groups: list[np.ndarray]
) -> np.ndarray:
    """One mean pairwise LPIPS per group of rows of ``array`` (the outputs of one source)."""
    return np.array([metric(next(unit_batches(array, rows, max(len(rows), 1)))) for rows in groups])
