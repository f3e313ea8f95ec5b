"""Optimizer and learning-rate schedule: AdamW, linear warm-up, cosine decay to zero."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from diffusers.optimization import get_cosine_schedule_with_warmup

from cxrgen.training.loop_config import TrainLoopConfig


def make_optimizer(params: Iterable[torch.nn.Parameter], cfg: TrainLoopConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        params,
        lr=cfg.lr,
        betas=(cfg.adam_beta1, cfg.adam_beta2),
        weight_decay=cfg.weight_decay,
    )


def make_lr_schedule(
    optimizer: torch.optim.Optimizer, cfg: TrainLoopConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_steps``, then a half cosine to 0 at ``max_steps``."""
    return get_cosine_schedule_with_warmup(optimizer, cfg.warmup_steps, cfg.max_steps)
