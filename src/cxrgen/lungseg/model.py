"""The lung segmenter: a small UNet of diffusers' UNet blocks, without a timestep.

Its down, middle and up blocks are the ones ``UNet2DModel`` is made of (``get_down_block``,
``UNetMidBlock2D``, ``get_up_block``, ResNet blocks with GroupNorm and skip connections),
composed as ``UNet2DModel`` composes them, with the time embedding left out (diffusers' ResNet
block takes ``temb=None``) and a head of per-pixel logits for background, right and left lung.
diffusers is already the project's network library, its blocks are maintained and tested
there, and the noise-aware classifier is built from the same blocks; MONAI's UNet would add a
large dependency for one small network. Saved as ``model.safetensors`` + ``config.json`` (the
constructor's keyword arguments); rebuilt with :func:`load_lungseg`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from diffusers.models.unets.unet_2d_blocks import UNetMidBlock2D, get_down_block, get_up_block
from torch import nn

from cxrgen.diffusion.model import check_unet_geometry
from cxrgen.lungseg.sides import LABELS
from cxrgen.model_files import load_model, save_model


class LungSegNet(nn.Module):
    """``net(x) -> logits`` (B, num_labels, H, W) for images (B, 1, H, W) in [-1, 1]."""

    def __init__(
        self,
        sample_size: int | Sequence[int],
        num_labels: int = len(LABELS),
        in_channels: int = 1,
        block_out_channels: Sequence[int] = (8, 16, 32),
        layers_per_block: int = 1,
        norm_num_groups: int = 4,
        dropout: float = 0.0,
    ):
        super().__init__()
        h, w = (sample_size, sample_size) if isinstance(sample_size, int) else tuple(sample_size)
        check_unet_geometry(h, w, block_out_channels, ())
        self.config: dict[str, Any] = {
            "sample_size": sample_size if isinstance(sample_size, int) else [h, w],
            "num_labels": num_labels,
            "in_channels": in_channels,
            "block_out_channels": list(block_out_channels),
            "layers_per_block": layers_per_block,
            "norm_num_groups": norm_num_groups,
            "dropout": dropout,
        }
        widths = list(block_out_channels)
        common = dict(
            temb_channels=None, resnet_eps=1e-5, resnet_act_fn="silu",
            resnet_groups=norm_num_groups, attention_head_dim=8, dropout=dropout,
        )  # fmt: skip
        self.conv_in = nn.Conv2d(in_channels, widths[0], kernel_size=3, padding=1)
        self.down_blocks = nn.ModuleList()
        previous = widths[0]
        for i, width in enumerate(widths):
            self.down_blocks.append(
                get_down_block(
                    "DownBlock2D",
                    num_layers=layers_per_block,
                    in_channels=previous,
                    out_channels=width,
                    add_downsample=i < len(widths) - 1,
                    downsample_padding=1,
                    **common,
                )  # fmt: skip
            )
            previous = width
        self.mid_block = UNetMidBlock2D(
            in_channels=previous, temb_channels=None, dropout=dropout, resnet_eps=1e-5,
            resnet_act_fn="silu", resnet_groups=norm_num_groups, add_attention=False,
        )  # fmt: skip
        self.up_blocks = nn.ModuleList()
        reversed_widths = widths[::-1]
        for i, width in enumerate(reversed_widths):
            self.up_blocks.append(
                get_up_block(
                    "UpBlock2D",
                    num_layers=layers_per_block + 1,
                    in_channels=reversed_widths[min(i + 1, len(widths) - 1)],
                    out_channels=width,
                    prev_output_channel=previous,
                    add_upsample=i < len(widths) - 1,
                    **common,
                )  # fmt: skip
            )
            previous = width
        self.norm_out = nn.GroupNorm(norm_num_groups, widths[0], eps=1e-5)
        self.act = nn.SiLU()
        self.conv_out = nn.Conv2d(widths[0], num_labels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        skips: tuple[torch.Tensor, ...] = (h,)
        for block in self.down_blocks:
            h, res = block(hidden_states=h, temb=None)
            skips += res
        h = self.mid_block(h, None)
        for block in self.up_blocks:
            res, skips = skips[-len(block.resnets) :], skips[: -len(block.resnets)]
            h = block(h, res, None)
        return self.conv_out(self.act(self.norm_out(h)))


def save_lungseg(model: LungSegNet, out_dir: str | Path) -> None:
    """``model.safetensors`` + ``config.json`` in ``out_dir`` (each written atomically)."""
    save_model(model, out_dir)


def load_lungseg(model_dir: str | Path, device: str | torch.device = "cpu") -> LungSegNet:
    """Rebuild the segmenter from ``config.json`` + ``model.safetensors``; eval mode, frozen."""
    return load_model(LungSegNet, model_dir, "lung segmenter", device)
