"""Augmentation for chest radiographs: small affine jitter and brightness / contrast.

Only transformations that keep a radiograph plausible: shifts, rotations and zoom of a few
percent, and mild brightness / contrast changes. Never a horizontal flip: the heart is on the
left, and a flipped chest is a different (situs inversus) anatomy, not the same class.

The parameters of one sample are drawn from its own generator (see
:mod:`cxrgen.training.seeding`), so an augmented sample is a pure function of
(seed, step, position in the batch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cxrgen.config import check


@dataclass(frozen=True)
class Augmentation:
    """Maximum strengths; each parameter is drawn uniformly in [-strength, +strength].

    rotate_deg: rotation in degrees. shift: translation as a fraction of the image side.
    scale: zoom factor 1 +- scale. brightness: added to [0, 1] intensities.
    contrast: factor 1 +- contrast applied around the image mean. Zero strengths are exact
    identities (the image is returned unchanged).
    """

    rotate_deg: float = 5.0
    shift: float = 0.05
    scale: float = 0.05
    brightness: float = 0.05
    contrast: float = 0.05

    def __post_init__(self):
        check(
            0 <= self.rotate_deg <= 30, f"aug_rotate_deg must be in [0, 30], got {self.rotate_deg}"
        )
        check(0 <= self.shift <= 0.25, f"aug_shift must be in [0, 0.25], got {self.shift}")
        check(0 <= self.scale <= 0.25, f"aug_scale must be in [0, 0.25], got {self.scale}")
        check(
            0 <= self.brightness <= 0.5,
            f"aug_brightness must be in [0, 0.5], got {self.brightness}",
        )
        check(0 <= self.contrast <= 0.5, f"aug_contrast must be in [0, 0.5], got {self.contrast}")

    @property
    def geometric(self) -> bool:
        return self.rotate_deg > 0 or self.shift > 0 or self.scale > 0

    @property
    def photometric(self) -> bool:
        return self.brightness > 0 or self.contrast > 0

    def draw(self, generator: torch.Generator) -> torch.Tensor:
        """Parameters (angle rad, zoom, tx, ty, brightness, contrast factor) for one sample."""
        u = torch.rand(6, generator=generator, dtype=torch.float64) * 2 - 1
        return torch.stack(
            [
                u[0] * math.radians(self.rotate_deg),
                1 + u[1] * self.scale,
                u[2] * self.shift,
                u[3] * self.shift,
                u[4] * self.brightness,
                1 + u[5] * self.contrast,
            ]
        )

    def apply(self, image: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Augment one (C, H, W) image with intensities in [0, 1]; returns the same shape."""
        out = image
        if self.geometric:
            out = affine(out[None], params[None, :4])[0]
        if self.photometric:
            mean = out.mean()
            out = ((out - mean) * float(params[5]) + mean + float(params[4])).clamp(0, 1)
        return out

    def apply_labels(self, labels: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """The geometric part of :meth:`apply` on an (H, W) integer label map, by nearest
        neighbour: a segmentation target drawn with the image's ``params`` moves with it."""
        if not self.geometric:
            return labels
        warped = affine(labels[None, None].to(torch.float32), params[None, :4], mode="nearest")
        return warped[0, 0].round().to(labels.dtype)


def affine(images: torch.Tensor, params: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Rotate by angle, zoom, then shift (fractions of the side) a (B, C, H, W) batch.

    Rotation is about the image centre in pixel space (correct for non-square images); the
    border is replicated so no black wedges appear. No reflection is ever part of the map.
    ``mode``: grid_sample's interpolation ('nearest' for label maps).
    """
    b, _, h, w = images.shape
    angle, zoom, tx, ty = (params[:, i].to(torch.float64) for i in range(4))
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # theta maps output to input coordinates in [-1, 1]^2; D^-1 R D with D = diag(w/2, h/2)
    theta = torch.stack(
        [
            torch.stack([cos, -sin * h / w, -2 * tx], dim=1),
            torch.stack([sin * w / h, cos, -2 * ty], dim=1),
        ],
        dim=1,
    ).to(images.dtype)
    grid = F.affine_grid(theta, [b, images.shape[1], h, w], align_corners=False)
    return F.grid_sample(images, grid, mode=mode, padding_mode="border", align_corners=False)
