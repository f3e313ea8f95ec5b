"""Optimizers and learning-rate schedules of the training loop.

Two recipes: 'adamw_cosine' (diffusion model, classifier: AdamW, linear warm-up, half cosine
to zero at max_steps) and 'adam_constant' (the GANs, as StarGAN v2: Adam with L2 weight decay,
linear warm-up, then constant).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from diffusers.optimization import (
    get_constant_schedule_with_warmup,
    get_cosine_schedule_with_warmup,
)

from cxrgen.training.loop_config import TrainLoopConfig


def make_optimizer(
    params: Iterable[torch.nn.Parameter],
    cfg: TrainLoopConfig,
    lr: float | None = None,
) -> torch.optim.Optimizer:
    """AdamW ('adamw_cosine') or Adam ('adam_constant'), as ``cfg.RECIPE`` says, with the
    config's betas and decay."""
    kind = {"adamw_cosine": torch.optim.AdamW, "adam_constant": torch.optim.Adam}[cfg.RECIPE]
    return kind(
        params,
        lr=cfg.lr if lr is None else lr,
        betas=(cfg.adam_beta1, cfg.adam_beta2),
        weight_decay=cfg.weight_decay,
    )


def make_lr_schedule(
    optimizer: torch.optim.Optimizer, cfg: TrainLoopConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_steps``, then a half cosine to 0 at ``max_steps``
    ('adamw_cosine') or the constant learning rate ('adam_constant'), as ``cfg.RECIPE``."""
    if cfg.RECIPE == "adam_constant":
        return get_constant_schedule_with_warmup(optimizer, cfg.warmup_steps)
    return get_cosine_schedule_with_warmup(optimizer, cfg.warmup_steps, cfg.max_steps)
