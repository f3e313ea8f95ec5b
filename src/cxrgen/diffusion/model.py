"""Build the class-conditional UNet and its noise schedule from config and data facts.

The UNet is diffusers' ``UNet2DModel`` with ``num_class_embeds = K + 1``: labels 0..K-1 are the
classes of ``classes.json`` and label K is the null class that classifier-free guidance uses
(training replaces a label by K with probability ``label_dropout``). The noise schedule is a
``DDPMScheduler`` predicting epsilon; the same schedule is saved beside the model so the
classifier, the sampler and the inversion all use exactly the same betas.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from diffusers import DDPMScheduler, UNet2DModel

from cxrgen.config import check
from cxrgen.data.classes import read_classes
from cxrgen.errors import ConfigError, DataError

BETA_SCHEDULES = {
    "linear": "linear",
    "cosine": "squaredcos_cap_v2",
    "squaredcos_cap_v2": "squaredcos_cap_v2",
    "scaled_linear": "scaled_linear",
}


def resolutions(image_size: int, n_levels: int) -> list[int]:
    """Feature-map side at each UNet level: image_size, image_size/2, ..."""
    return [image_size // 2**i for i in range(n_levels)]


def check_unet_geometry(
    height: int, width: int, block_out_channels: Sequence[int], attention_resolutions: Sequence[int]
) -> None:
    """ConfigError for image sizes / attention resolutions the UNet cannot take."""
    n = len(block_out_channels)
    factor = 2 ** (n - 1)
    if height % factor or width % factor:
        raise ConfigError(
            f"image size {height}x{width} is not divisible by 2**(len(block_out_channels)-1) = "
            f"{factor} ({n} levels {tuple(block_out_channels)}); use fewer levels or resize "
            f"the images (preprocess) to a multiple of {factor}"
        )
    levels = resolutions(height, n)
    bad = sorted(set(attention_resolutions) - set(levels))
    if bad:
        raise ConfigError(
            f"attention_resolutions {bad} are not resolutions of this UNet: with {height}x"
            f"{width} images and {n} levels they are {levels}"
        )


def build_unet(
    image_size: tuple[int, int],
    num_classes: int,
    block_out_channels: Sequence[int],
    layers_per_block: int,
    attention_resolutions: Sequence[int],
    dropout: float,
    norm_num_groups: int = 32,
    attention_head_dim: int = 8,
    mid_attention: bool = True,
    num_train_timesteps: int | None = None,
    channels: int = 1,
) -> UNet2DModel:
    """A ``UNet2DModel`` for (channels, H, W) images and K classes plus the null class."""
    height, width = image_size
    check_unet_geometry(height, width, block_out_channels, attention_resolutions)
    check(
        all(c % norm_num_groups == 0 for c in block_out_channels),
        f"norm_num_groups ({norm_num_groups}) must divide every block_out_channels "
        f"{tuple(block_out_channels)}",
    )
    down = [
        "AttnDownBlock2D" if r in attention_resolutions else "DownBlock2D"
        for r in resolutions(height, len(block_out_channels))
    ]
    up = ["AttnUpBlock2D" if d == "AttnDownBlock2D" else "UpBlock2D" for d in reversed(down)]
    return UNet2DModel(
        sample_size=height if height == width else (height, width),
        in_channels=channels,
        out_channels=channels,
        block_out_channels=tuple(block_out_channels),
        layers_per_block=layers_per_block,
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        dropout=dropout,
        norm_num_groups=norm_num_groups,
        attention_head_dim=attention_head_dim,
        add_attention=mid_attention,
        num_class_embeds=num_classes + 1,
        num_train_timesteps=num_train_timesteps,
    )


def build_scheduler(
    num_train_timesteps: int = 1000,
    beta_schedule: str = "linear",
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
) -> DDPMScheduler:
    """DDPM noise schedule, epsilon prediction. ``beta_schedule`` 'cosine' = squaredcos_cap_v2."""
    check(
        beta_schedule in BETA_SCHEDULES,
        f"beta_schedule must be one of {sorted(BETA_SCHEDULES)}, got {beta_schedule!r}",
    )
    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_schedule=BETA_SCHEDULES[beta_schedule],
        beta_start=beta_start,
        beta_end=beta_end,
        prediction_type="epsilon",
        clip_sample=True,
        clip_sample_range=1.0,
    )


def check_same_schedule(a: DDPMScheduler, b: DDPMScheduler, what: str = "classifier") -> None:
    """ConfigError unless two schedulers have the same timesteps and betas (guidance needs it)."""
    same = (
        a.config.num_train_timesteps == b.config.num_train_timesteps
        and a.betas.shape == b.betas.shape
        and bool((a.betas - b.betas).abs().max() < 1e-7)
    )
    if not same:
        raise ConfigError(
            f"the {what} was trained with another noise schedule than the diffusion model "
            f"({a.config.num_train_timesteps} steps {a.config.beta_schedule} vs "
            f"{b.config.num_train_timesteps} steps {b.config.beta_schedule}); train it with the "
            "diffusion model's scheduler (scheduler_dir)"
        )


def load_diffusion(
    model_dir: str | Path, device: str | torch.device = "cpu"
) -> tuple[UNet2DModel, DDPMScheduler, list[str]]:
    """(EMA UNet in eval mode, its DDPM scheduler, class names) of a trained model folder.

    Label i is ``classes[i]``; the null class of classifier-free guidance is ``len(classes)``.
    """
    model_dir = Path(model_dir)
    for sub in ("unet/config.json", "scheduler/scheduler_config.json", "classes.json"):
        if not (model_dir / sub).exists():
            raise DataError(f"no trained diffusion model in {model_dir} (missing {sub})")
    unet = UNet2DModel.from_pretrained(model_dir / "unet").to(device).eval()
    scheduler = DDPMScheduler.from_pretrained(model_dir / "scheduler")
    classes = read_classes(model_dir / "classes.json")
    if unet.config.num_class_embeds != len(classes) + 1:
        raise DataError(
            f"{model_dir}: the UNet has {unet.config.num_class_embeds} class embeddings for "
            f"{len(classes)} classes (expected K + 1)"
        )
    return unet, scheduler, classes


def check_unet_shape(cfg) -> None:
    """Checks of the UNet-shape keys the diffusion model and the classifier configs share."""
    check(len(cfg.block_out_channels) >= 1, "block_out_channels needs at least one width")
    check(all(w > 0 for w in cfg.block_out_channels), "block_out_channels must be > 0")
    check(cfg.layers_per_block >= 1, "layers_per_block must be >= 1")
    check(
        all(r >= 1 for r in cfg.attention_resolutions),
        f"attention_resolutions are feature-map sides (>= 1), got {cfg.attention_resolutions}",
    )
    check(cfg.norm_num_groups >= 1, f"norm_num_groups must be >= 1, got {cfg.norm_num_groups}")
    check(
        cfg.attention_head_dim >= 1,
        f"attention_head_dim must be >= 1, got {cfg.attention_head_dim}",
    )
    check(
        all(w % cfg.norm_num_groups == 0 for w in cfg.block_out_channels),
        f"norm_num_groups ({cfg.norm_num_groups}) must divide every block_out_channels "
        f"{cfg.block_out_channels}",
    )
    check(
        all(w % cfg.attention_head_dim == 0 for w in cfg.block_out_channels),
        f"attention_head_dim ({cfg.attention_head_dim}) must divide every "
        f"block_out_channels {cfg.block_out_channels}",
    )
    check(0 <= cfg.dropout < 1, f"dropout must be in [0, 1), got {cfg.dropout}")
