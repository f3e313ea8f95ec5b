"""The config keys every training stage shares (optimisation, EMA, checkpoints, data, devices).

Model-specific configs (:class:`cxrgen.diffusion.config.DiffusionTrainConfig`,
:class:`cxrgen.classifier.config.ClassifierTrainConfig`) subclass it, adding their model keys
and overriding defaults, so each stage's config.yaml section is one flat mapping.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from cxrgen.config import check
from cxrgen.devices import check_device_name
from cxrgen.training.augment import Augmentation

MIXED_PRECISION = ("auto", "no", "bf16", "fp16")

# Keys that may change between a run and its resumption without changing the result's meaning.
RESUMABLE_CHANGES = frozenset(
    {
        "max_steps",
        "checkpoint_every",
        "keep_checkpoints",
        "log_every",
        "num_workers",
        "compile",
        "channels_last",
        "device",
        "mixed_precision",
        "sample_every",
        "n_sample_per_class",
        "n_sample_per_domain",
        "sample_steps",
        "sample_guidance_scale",
        "valid_bins",
        "valid_batch_size",
    }
)


@dataclass(frozen=True)
class TrainLoopConfig:
    """Optimisation and bookkeeping shared by every trained model.

    seed: every random quantity (init, data order, augmentation, noise, dropout) derives from it.
    batch_size: global batch (split evenly across processes under ``accelerate launch``).
    max_steps: optimizer steps. lr / warmup_steps: AdamW learning rate after a linear warm-up,
        then cosine decay to 0 at max_steps. weight_decay, adam_beta1/2: AdamW.
    grad_clip: max global gradient norm (0 = off).
    ema_decay: EMA of the weights (diffusers EMAModel, warm-up (1+s)/(10+s)); the EMA weights
        are what is saved and used downstream. 0 = no EMA, the last weights are saved.
    checkpoint_every / keep_checkpoints: resumable state every N steps (and at the end),
        keeping the newest few. log_every: steps per row of loss.parquet.
    mixed_precision: 'auto' = bf16 on CUDA, none on CPU; or 'no', 'bf16', 'fp16'.
    compile: torch.compile the model. channels_last: NHWC memory format (faster convs on GPU).
    device: 'auto' (CUDA when present), 'cpu' or 'cuda'. num_workers: data-loader processes
        (the result does not depend on it).
    balanced_sampling: draw each epoch class-balanced (with replacement) instead of a shuffle.
    aug_*: maximum augmentation strengths (see :class:`cxrgen.training.augment.Augmentation`);
        all 0 = no augmentation. There is deliberately no horizontal flip.
    """

    seed: int = 0
    batch_size: int = 16
    max_steps: int = 1000
    lr: float = 2e-4
    warmup_steps: int = 100
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    log_every: int = 10
    mixed_precision: str = "auto"
    compile: bool = False
    channels_last: bool = False
    device: str = "auto"
    num_workers: int = 0
    balanced_sampling: bool = False
    aug_rotate_deg: float = 5.0
    aug_shift: float = 0.05
    aug_scale: float = 0.05
    aug_brightness: float = 0.05
    aug_contrast: float = 0.05

    # how the one training loop trains models of this config (not config keys): the
    # optimizer / learning-rate recipe of training/schedule.py and the EMA's warm-up
    RECIPE: ClassVar[str] = "adamw_cosine"
    EMA_WARMUP: ClassVar[bool] = True

    def precision(self, cpu: bool) -> str:
        """accelerate's mixed_precision for ``mixed_precision`` on the CPU or a GPU."""
        if self.mixed_precision != "auto":
            return self.mixed_precision
        import torch  # config modules stay free of torch until a job trains

        return "no" if cpu else ("bf16" if torch.cuda.is_bf16_supported() else "fp16")

    def __post_init__(self):
        check(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        check(self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}")
        check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        check(
            0 <= self.warmup_steps <= self.max_steps,
            f"warmup_steps ({self.warmup_steps}) must be in [0, max_steps={self.max_steps}]",
        )
        check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        check(0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1, "adam betas must be in [0, 1)")
        check(self.grad_clip >= 0, f"grad_clip must be >= 0 (0 = off), got {self.grad_clip}")
        check(
            0 <= self.ema_decay < 1, f"ema_decay must be in [0, 1) (0 = off), got {self.ema_decay}"
        )
        check(self.checkpoint_every >= 1, "checkpoint_every must be >= 1")
        check(self.keep_checkpoints >= 1, "keep_checkpoints must be >= 1")
        check(self.log_every >= 1, "log_every must be >= 1")
        check(
            self.mixed_precision in MIXED_PRECISION,
            f"mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}",
        )
        check_device_name(self.device)
        check(self.num_workers >= 0, "num_workers must be >= 0")
        self.augmentation()  # range checks of the aug_* keys

    def augmentation(self) -> Augmentation | None:
        aug = Augmentation(
            rotate_deg=self.aug_rotate_deg,
            shift=self.aug_shift,
            scale=self.aug_scale,
            brightness=self.aug_brightness,
            contrast=self.aug_contrast,
        )
        return aug if aug.geometric or aug.photometric else None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
