"""The config keys both GAN trainers share: TrainLoopConfig with GAN defaults and limits.

A GAN step makes several optimizer updates (discriminator, then generator), so the trainers
use :func:`cxrgen.gan.loop.run_gan_training` instead of the single-loss loop; it honours the
shared keys below. GAN training is single-device (R1's double backward and four optimizers
are not worth DDP here); ``mixed_precision`` may be 'no' or 'bf16' (fp16 would need a grad
scaler per optimizer), and ``compile`` is not supported.
"""

from __future__ import annotations

from dataclasses import dataclass

from cxrgen.config import check
from cxrgen.training.loop_config import TrainLoopConfig

GAN_MIXED_PRECISION = ("auto", "no", "bf16")


@dataclass(frozen=True)
class GANTrainConfig(TrainLoopConfig):
    """Shared GAN keys (documented on TrainLoopConfig), GAN-specific meaning:

    lr / adam_beta1 / adam_beta2 / weight_decay: Adam (L2 weight decay, as StarGAN v2) for
        every network; warmup_steps: linear warm-up, then a constant learning rate.
    ema_decay: fixed-beta moving average of the generator side (0 = keep the last weights).
    grad_clip: per-update global norm clip of the updated networks (0 = off).
    mixed_precision: 'auto' and 'no' = float32; 'bf16' = bfloat16 autocast on CUDA.
    sample_every: also write samples/step-N.png every N steps (0 = only samples.png).
    """

    batch_size: int = 8
    max_steps: int = 100_000
    lr: float = 1e-4
    warmup_steps: int = 0
    weight_decay: float = 1e-4
    adam_beta1: float = 0.0
    adam_beta2: float = 0.99
    grad_clip: float = 0.0
    ema_decay: float = 0.999
    checkpoint_every: int = 5000
    log_every: int = 100
    mixed_precision: str = "no"
    balanced_sampling: bool = True
    sample_every: int = 0

    def __post_init__(self):
        super().__post_init__()
        check(
            self.mixed_precision in GAN_MIXED_PRECISION,
            f"mixed_precision must be one of {GAN_MIXED_PRECISION} for GAN training "
            f"(fp16 would need a grad scaler per optimizer), got {self.mixed_precision!r}",
        )
        check(not self.compile, "compile is not supported by the GAN trainers; set compile: false")
        check(self.sample_every >= 0, "sample_every must be >= 0 (0 = only at the end)")
