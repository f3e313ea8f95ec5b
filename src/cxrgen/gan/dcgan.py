"""A class-conditional DCGAN (Radford et al. 2016) baseline for single-channel radiographs.

Generator: [z, embedding(y)] -> linear projection to (C, H/2^n, W/2^n) -> n transposed
convolutions (4x4, stride 2) with batch norm and ReLU -> tanh. Discriminator: the image with
an extra channel holding a learned per-class map (embedding(y) reshaped to H x W) -> n strided
convolutions with batch norm (not on the first) and leaky ReLU -> a linear real/fake logit.
Widths are ``base_dim`` at the image side and double per level up to ``max_conv_dim``; weights
start from N(0, 0.02) (batch-norm scales N(1, 0.02)) as in DCGAN.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cxrgen.config import check
from cxrgen.model_files import load_weights, read_model_config


def dcgan_init(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def check_dcgan_geometry(height: int, width: int, n_up: int) -> None:
    f = 2**n_up
    check(n_up >= 1, f"upsamplings must be >= 1, got {n_up}")
    check(
        height % f == 0 and width % f == 0,
        f"image size {height}x{width} is not divisible by 2**upsamplings = {f}; lower "
        f"upsamplings or preprocess to a size divisible by {f}",
    )


def _widths(base_dim: int, max_conv_dim: int, n_up: int) -> list[int]:
    """Channels at sides H/2, H/4, ..., H/2^n."""
    return [min(base_dim * 2**i, max_conv_dim) for i in range(n_up)]


class DCGANGenerator(nn.Module):
    """``G(z, y)``: images (B, C, H, W) in [-1, 1] of classes y from latents z."""

    def __init__(
        self,
        image_size: tuple[int, int] = (64, 64),
        num_classes: int = 2,
        latent_dim: int = 100,
        embed_dim: int = 50,
        base_dim: int = 64,
        max_conv_dim: int = 512,
        n_up: int = 4,
        channels: int = 1,
    ):
        super().__init__()
        h, w = image_size
        check_dcgan_geometry(h, w, n_up)
        widths = _widths(base_dim, max_conv_dim, n_up)
        self.start = (widths[-1], h >> n_up, w >> n_up)
        self.embed = nn.Embedding(num_classes, embed_dim)
        self.project = nn.Linear(latent_dim + embed_dim, widths[-1] * self.start[1] * self.start[2])
        layers: list[nn.Module] = [nn.BatchNorm2d(widths[-1]), nn.ReLU()]
        for i in reversed(range(1, n_up)):
            layers += [
                nn.ConvTranspose2d(widths[i], widths[i - 1], 4, 2, 1, bias=False),
                nn.BatchNorm2d(widths[i - 1]),
                nn.ReLU(),
            ]
        layers += [nn.ConvTranspose2d(widths[0], channels, 4, 2, 1), nn.Tanh()]
        self.body = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.project(torch.cat([z, self.embed(y)], dim=1))
        return self.body(h.view(len(z), *self.start))


class DCGANDiscriminator(nn.Module):
    """``D(x, y)``: real/fake logits (B,) of images x for classes y."""

    def __init__(
        self,
        image_size: tuple[int, int] = (64, 64),
        num_classes: int = 2,
        base_dim: int = 64,
        max_conv_dim: int = 512,
        n_up: int = 4,
        channels: int = 1,
    ):
        super().__init__()
        h, w = image_size
        check_dcgan_geometry(h, w, n_up)
        widths = _widths(base_dim, max_conv_dim, n_up)
        self.image_size = (h, w)
        self.embed = nn.Embedding(num_classes, h * w)
        layers: list[nn.Module] = [nn.Conv2d(channels + 1, widths[0], 4, 2, 1), nn.LeakyReLU(0.2)]
        for i in range(1, n_up):
            layers += [
                nn.Conv2d(widths[i - 1], widths[i], 4, 2, 1, bias=False),
                nn.BatchNorm2d(widths[i]),
                nn.LeakyReLU(0.2),
            ]
        self.body = nn.Sequential(*layers)
        self.logit = nn.Linear(widths[-1] * (h >> n_up) * (w >> n_up), 1)
        self.apply(dcgan_init)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        label_map = self.embed(y).view(len(y), 1, *self.image_size).to(x.dtype)
        return self.logit(self.body(torch.cat([x, label_map], dim=1)).flatten(1)).squeeze(1)


@dataclass
class DCGANModel:
    """A trained class-conditional generator (EMA weights)."""

    generator: DCGANGenerator
    classes: tuple[str, ...]
    image_size: tuple[int, int]
    latent_dim: int
    config: dict[str, Any]

    @torch.no_grad()
    def sample(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Images (B, 1, H, W) in [-1, 1] of classes y."""
        return self.generator(z, y).clamp(-1, 1)


def load_dcgan(model_dir: str | Path, device: str | torch.device = "cpu") -> DCGANModel:
    """Rebuild the EMA generator a DCGAN training saved (eval mode, frozen)."""
    config = read_model_config(model_dir, "dcgan")
    gen = load_weights(model_dir, "generator", DCGANGenerator(**config["generator"]))
    return DCGANModel(
        gen.to(device),
        tuple(config["classes"]),
        tuple(config["image_size"]),
        int(config["generator"]["latent_dim"]),
        config,
    )
