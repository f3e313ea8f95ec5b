"""The noise-aware classifier: the down path of a diffusion UNet, pooled, and a linear head.

Built from diffusers' UNet blocks (``get_down_block``, ``UNetMidBlock2D``) with the same
sinusoidal timestep embedding as ``UNet2DModel`` added in every ResNet block, as in the ADM
classifier (Dhariwal & Nichol 2021), with mean pooling instead of attention pooling. Saved as
``model.safetensors`` + ``config.json`` (the constructor's keyword arguments); rebuilt with
:func:`load_classifier`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.unets.unet_2d_blocks import UNetMidBlock2D, get_down_block
from torch import nn

from cxrgen.diffusion.model import check_unet_geometry, resolutions
from cxrgen.model_files import load_model, save_model


class NoiseAwareClassifier(nn.Module):
    """``classifier(x_t, t) -> logits`` (B, K) for images in [-1, 1] noised to timestep t.

    ``t`` is a scalar or a (B,) tensor of DDPM timesteps (0 = clean image). The forward pass
    is differentiable with respect to ``x_t`` (classifier guidance needs grad log p(y | x_t)).
    """

    def __init__(
        self,
        num_classes: int,
        sample_size: int | Sequence[int],
        in_channels: int = 1,
        block_out_channels: Sequence[int] = (32, 64, 128),
        layers_per_block: int = 1,
        attention_resolutions: Sequence[int] = (),
        mid_attention: bool = True,
        attention_head_dim: int = 32,
        norm_num_groups: int = 32,
        dropout: float = 0.0,
        num_train_timesteps: int = 1000,
    ):
        super().__init__()
        h, w = (sample_size, sample_size) if isinstance(sample_size, int) else tuple(sample_size)
        check_unet_geometry(h, w, block_out_channels, attention_resolutions)
        self.config: dict[str, Any] = {
            "num_classes": num_classes,
            "sample_size": sample_size if isinstance(sample_size, int) else [h, w],
            "in_channels": in_channels,
            "block_out_channels": list(block_out_channels),
            "layers_per_block": layers_per_block,
            "attention_resolutions": list(attention_resolutions),
            "mid_attention": mid_attention,
            "attention_head_dim": attention_head_dim,
            "norm_num_groups": norm_num_groups,
            "dropout": dropout,
            "num_train_timesteps": num_train_timesteps,
        }
        widths = list(block_out_channels)
        temb = 4 * widths[0]
        self.time_proj = Timesteps(widths[0], flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(widths[0], temb)
        self.conv_in = nn.Conv2d(in_channels, widths[0], kernel_size=3, padding=1)
        self.down_blocks = nn.ModuleList()
        previous = widths[0]
        for i, (width, res) in enumerate(zip(widths, resolutions(h, len(widths)), strict=True)):
            kind = "AttnDownBlock2D" if res in attention_resolutions else "DownBlock2D"
            self.down_blocks.append(
                get_down_block(
                    kind,
                    num_layers=layers_per_block,
                    in_channels=previous,
                    out_channels=width,
                    temb_channels=temb,
                    add_downsample=i < len(widths) - 1,
                    resnet_eps=1e-5,
                    resnet_act_fn="silu",
                    resnet_groups=norm_num_groups,
                    attention_head_dim=attention_head_dim,
                    downsample_padding=1,
                    dropout=dropout,
                )
            )
            previous = width
        self.mid_block = UNetMidBlock2D(
            in_channels=previous,
            temb_channels=temb,
            dropout=dropout,
            resnet_eps=1e-5,
            resnet_act_fn="silu",
            resnet_groups=norm_num_groups,
            attention_head_dim=attention_head_dim,
            add_attention=mid_attention,
        )
        self.norm_out = nn.GroupNorm(norm_num_groups, previous, eps=1e-5)
        self.act = nn.SiLU()
        self.head = nn.Linear(previous, num_classes)

    @property
    def num_classes(self) -> int:
        return self.config["num_classes"]

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        if not torch.is_tensor(t):
            t = torch.tensor([t], dtype=torch.long, device=x_t.device)
        t = t.reshape(-1).to(x_t.device).expand(x_t.shape[0])
        emb = self.time_embedding(self.time_proj(t).to(dtype=self.conv_in.weight.dtype))
        h = self.conv_in(x_t)
        for block in self.down_blocks:
            h, _ = block(hidden_states=h, temb=emb)
        h = self.mid_block(h, emb)
        h = self.act(self.norm_out(h)).mean(dim=(2, 3))
        return self.head(h)


def save_classifier(model: NoiseAwareClassifier, out_dir: str | Path) -> None:
    """``model.safetensors`` + ``config.json`` in ``out_dir`` (each written atomically)."""
    save_model(model, out_dir)


def load_classifier(
    model_dir: str | Path, device: str | torch.device = "cpu"
) -> NoiseAwareClassifier:
    """Rebuild the classifier from ``config.json`` + ``model.safetensors``; eval mode, frozen.

    Parameters do not require grad; gradients with respect to the input still flow.
    """
    return load_model(NoiseAwareClassifier, model_dir, "classifier", device)


def log_prob_gradient(
    classifier: nn.Module, x_t: torch.Tensor, t: torch.Tensor | int, labels: torch.Tensor
) -> torch.Tensor:
    """grad_x log p(labels | x_t, t), summed over the batch (each sample's own gradient)."""
    with torch.enable_grad():
        x = x_t.detach().requires_grad_(True)
        log_p = torch.log_softmax(classifier(x, t).float(), dim=-1)
        chosen = log_p.gather(1, labels.to(x.device).reshape(-1, 1)).sum()
        return torch.autograd.grad(chosen, x)[0]
