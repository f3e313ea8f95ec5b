"""StarGAN v2 networks for single-channel chest radiographs (Choi et al. 2020), w_hpf = 0.

- :class:`Generator`: a stem conv, an encoder of pre-activation residual blocks with instance
  norm (``n_down`` of them halving the resolution, then ``n_bottleneck`` more), a decoder of
  AdaIN residual blocks driven by the style code (mirroring the encoder, upsampling by
  nearest-neighbour doubling) and a 1x1 conv back to one channel. Without the high-pass branch
  there is no face-landmark mask: every AdaIN block adds its shortcut.
- :class:`MappingNetwork`: z -> shared MLP trunk -> one MLP head per domain -> style code.
- :class:`StyleEncoder`: image -> shared residual conv trunk -> one linear head per domain.
- :class:`Discriminator`: the same trunk -> one real/fake logit per domain (multi-task).

Widths start at ``base_dim`` and double at each downsampling up to ``max_conv_dim``; the trunk
of the style encoder and discriminator halves the resolution until the side is 4 (or odd), then
a conv as large as the remaining map reduces it to 1 x 1. Residual sums are scaled by 1/sqrt(2).
Weights start from He (fan-in) normal with zero biases, as the reference implementation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cxrgen.config import check
from cxrgen.model_files import load_weights, read_model_config


def he_init(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def check_generator_geometry(height: int, width: int, n_down: int) -> None:
    """ConfigError unless the image side survives ``n_down`` halvings exactly."""
    f = 2**n_down
    check(
        height % f == 0 and width % f == 0,
        f"image size {height}x{width} is not divisible by 2**g_downsamplings = {f}; lower "
        f"g_downsamplings or preprocess to a size divisible by {f}",
    )


def trunk_downsamplings(height: int, width: int) -> tuple[int, int, int]:
    """(halvings, final height, final width) of the style-encoder / discriminator trunk."""
    n = 0
    while min(height, width) > 4 and height % 2 == 0 and width % 2 == 0:
        height, width, n = height // 2, width // 2, n + 1
    return n, height, width


class ResBlock(nn.Module):
    """Pre-activation residual block, optional instance norm and 2x average-pool downsampling."""

    def __init__(self, dim_in: int, dim_out: int, normalize: bool = False, downsample=False):
        super().__init__()
        self.downsample = downsample
        self.conv1 = nn.Conv2d(dim_in, dim_in, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim_in, dim_out, 3, 1, 1)
        self.norm1 = nn.InstanceNorm2d(dim_in, affine=True) if normalize else nn.Identity()
        self.norm2 = nn.InstanceNorm2d(dim_in, affine=True) if normalize else nn.Identity()
        self.skip = nn.Conv2d(dim_in, dim_out, 1, bias=False) if dim_in != dim_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.skip is None else self.skip(x)
        h = self.conv1(F.leaky_relu(self.norm1(x), 0.2))
        if self.downsample:
            shortcut, h = F.avg_pool2d(shortcut, 2), F.avg_pool2d(h, 2)
        h = self.conv2(F.leaky_relu(self.norm2(h), 0.2))
        return (shortcut + h) / math.sqrt(2)


class AdaIN(nn.Module):
    """Instance norm whose scale (1 + gamma) and shift beta are linear in the style code."""

    def __init__(self, style_dim: int, channels: int):
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.fc = nn.Linear(style_dim, 2 * channels)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.fc(s)[:, :, None, None].chunk(2, dim=1)
        return (1 + gamma) * self.norm(x) + beta


class AdaINResBlock(nn.Module):
    """Residual block with AdaIN normalisation and optional nearest 2x upsampling."""

    def __init__(self, dim_in: int, dim_out: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.upsample = upsample
        self.norm1, self.norm2 = AdaIN(style_dim, dim_in), AdaIN(style_dim, dim_out)
        self.conv1 = nn.Conv2d(dim_in, dim_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim_out, dim_out, 3, 1, 1)
        self.skip = nn.Conv2d(dim_in, dim_out, 1, bias=False) if dim_in != dim_out else None

    def _up(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="nearest") if self.upsample else x

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        shortcut = self._up(x)
        if self.skip is not None:
            shortcut = self.skip(shortcut)
        h = self.conv1(self._up(F.leaky_relu(self.norm1(x, s), 0.2)))
        h = self.conv2(F.leaky_relu(self.norm2(h, s), 0.2))
        return (shortcut + h) / math.sqrt(2)


class Generator(nn.Module):
    """``G(x, s)``: translate images x (B, C, H, W) to the style s (B, style_dim)."""

    def __init__(
        self,
        style_dim: int = 64,
        base_dim: int = 64,
        max_conv_dim: int = 512,
        n_down: int = 4,
        n_bottleneck: int = 2,
        channels: int = 1,
    ):
        super().__init__()
        self.stem = nn.Conv2d(channels, base_dim, 3, 1, 1)
        self.encode, self.decode = nn.ModuleList(), nn.ModuleList()
        dim = base_dim
        for _ in range(n_down):
            out = min(2 * dim, max_conv_dim)
            self.encode.append(ResBlock(dim, out, normalize=True, downsample=True))
            self.decode.insert(0, AdaINResBlock(out, dim, style_dim, upsample=True))
            dim = out
        for _ in range(n_bottleneck):
            self.encode.append(ResBlock(dim, dim, normalize=True))
            self.decode.insert(0, AdaINResBlock(dim, dim, style_dim))
        self.to_image = nn.Sequential(
            nn.InstanceNorm2d(base_dim, affine=True),
            nn.LeakyReLU(0.2),
            nn.Conv2d(base_dim, channels, 1, 1, 0),
        )
        self.apply(he_init)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for block in self.encode:
            h = block(h)
        for block in self.decode:
            h = block(h, s)
        return self.to_image(h)


def _pick(per_domain: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Row i of (B, K, ...) at domain y[i]."""
    return per_domain[torch.arange(len(y), device=y.device), y]


class MappingNetwork(nn.Module):
    """``F(z, y)``: latent codes z (B, latent_dim) -> style codes of domains y."""

    def __init__(
        self,
        latent_dim: int = 16,
        style_dim: int = 64,
        num_domains: int = 2,
        hidden_dim: int = 512,
        shared_layers: int = 4,
        head_layers: int = 4,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(shared_layers):
            layers += [nn.Linear(latent_dim if i == 0 else hidden_dim, hidden_dim), nn.ReLU()]
        self.shared = nn.Sequential(*layers)

        def head() -> nn.Sequential:
            body: list[nn.Module] = []
            for _ in range(head_layers - 1):
                body += [nn.Linear(hidden_dim, hidden_dim), nn.ReLU()]
            return nn.Sequential(*body, nn.Linear(hidden_dim, style_dim))

        self.heads = nn.ModuleList(head() for _ in range(num_domains))
        self.apply(he_init)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.shared(z)
        return _pick(torch.stack([head(h) for head in self.heads], dim=1), y)


def down_trunk(
    height: int, width: int, base_dim: int, max_conv_dim: int, channels: int
) -> tuple[nn.Sequential, int]:
    """Stem conv, residual downsampling blocks, a final conv to 1 x 1; returns (trunk, width)."""
    n, fh, fw = trunk_downsamplings(height, width)
    blocks: list[nn.Module] = [nn.Conv2d(channels, base_dim, 3, 1, 1)]
    dim = base_dim
    for _ in range(n):
        out = min(2 * dim, max_conv_dim)
        blocks.append(ResBlock(dim, out, downsample=True))
        dim = out
    blocks += [nn.LeakyReLU(0.2), nn.Conv2d(dim, dim, (fh, fw), 1, 0), nn.LeakyReLU(0.2)]
    return nn.Sequential(*blocks), dim


class StyleEncoder(nn.Module):
    """``E(x, y)``: the style code of images x read by the heads of domains y."""

    def __init__(
        self,
        image_size: tuple[int, int] = (256, 256),
        style_dim: int = 64,
        num_domains: int = 2,
        base_dim: int = 64,
        max_conv_dim: int = 512,
        channels: int = 1,
    ):
        super().__init__()
        self.shared, dim = down_trunk(*image_size, base_dim, max_conv_dim, channels)
        self.heads = nn.ModuleList(nn.Linear(dim, style_dim) for _ in range(num_domains))
        self.apply(he_init)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.shared(x).flatten(1)
        return _pick(torch.stack([head(h) for head in self.heads], dim=1), y)


class Discriminator(nn.Module):
    """``D(x, y)``: the real/fake logit (B,) of images x for domains y (one output per domain)."""

    def __init__(
        self,
        image_size: tuple[int, int] = (256, 256),
        num_domains: int = 2,
        base_dim: int = 64,
        max_conv_dim: int = 512,
        channels: int = 1,
    ):
        super().__init__()
        self.shared, dim = down_trunk(*image_size, base_dim, max_conv_dim, channels)
        self.logits = nn.Conv2d(dim, num_domains, 1, 1, 0)
        self.apply(he_init)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _pick(self.logits(self.shared(x)).flatten(1), y)


@dataclass
class StarGANNets:
    """The four networks; the discriminator is None in a loaded (inference) model."""

    generator: Generator
    mapping_network: MappingNetwork
    style_encoder: StyleEncoder
    discriminator: Discriminator | None = None

    def modules(self) -> dict[str, nn.Module]:
        names = ("generator", "mapping_network", "style_encoder", "discriminator")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


def build_stargan(architecture: dict[str, dict], with_discriminator: bool = True) -> StarGANNets:
    """Build the networks from ``{"generator": kwargs, "mapping_network": kwargs, ...}``."""
    image_size = tuple(architecture["style_encoder"]["image_size"])
    check_generator_geometry(*image_size, architecture["generator"]["n_down"])
    return StarGANNets(
        Generator(**architecture["generator"]),
        MappingNetwork(**architecture["mapping_network"]),
        StyleEncoder(**{**architecture["style_encoder"], "image_size": image_size}),
        Discriminator(**{**architecture["discriminator"], "image_size": image_size})
        if with_discriminator
        else None,
    )


@dataclass
class StarGANModel:
    """A trained translator (EMA weights): generator, mapping network, style encoder."""

    nets: StarGANNets
    classes: tuple[str, ...]
    image_size: tuple[int, int]
    latent_dim: int
    config: dict[str, Any]

    @torch.no_grad()
    def translate_latent(self, x: torch.Tensor, y_trg: torch.Tensor, z: torch.Tensor):
        """x (B, 1, H, W) in [-1, 1] -> domains y_trg with styles F(z, y_trg); clamped."""
        return self.nets.generator(x, self.nets.mapping_network(z, y_trg)).clamp(-1, 1)

    @torch.no_grad()
    def translate_reference(self, x: torch.Tensor, y_trg: torch.Tensor, x_ref: torch.Tensor):
        """x -> domains y_trg with the styles E(x_ref, y_trg) of reference images; clamped."""
        return self.nets.generator(x, self.nets.style_encoder(x_ref, y_trg)).clamp(-1, 1)


def load_stargan(model_dir: str | Path, device: str | torch.device = "cpu") -> StarGANModel:
    """Rebuild the EMA networks a StarGAN training saved (eval mode, frozen)."""
    config = read_model_config(model_dir, "stargan")
    nets = build_stargan(config["architecture"], with_discriminator=False)
    for name, net in nets.modules().items():
        load_weights(model_dir, name, net).to(device)
    return StarGANModel(
        nets,
        tuple(config["classes"]),
        tuple(config["image_size"]),
        int(config["architecture"]["mapping_network"]["latent_dim"]),
        config,
    )
