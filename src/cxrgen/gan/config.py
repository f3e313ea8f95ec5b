"""The GAN training configs: the keys both trainers share (:class:`GANTrainConfig`, TrainLoopConfig
with GAN defaults and limits), :class:`StarGANTrainConfig` and :class:`DCGANTrainConfig`.

A GAN step makes several optimizer updates (discriminator, then generator) as phases of one
step of the training loop every model uses (:func:`cxrgen.training.loop.run_training`); it
honours the shared keys below. The workflow trains GANs in one process (R1's double backward
and four optimizers are not worth DDP here); ``mixed_precision`` may be 'no' or 'bf16' (fp16
would need a grad scaler per optimizer), and ``compile`` is not supported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

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

    RECIPE: ClassVar[str] = "adam_constant"  # Adam, L2 decay, constant after the warm-up
    EMA_WARMUP: ClassVar[bool] = False  # StarGAN v2's fixed-beta average

    def precision(self, cpu: bool) -> str:
        """'auto' and 'no' = float32; 'bf16' only on CUDA."""
        return "bf16" if self.mixed_precision == "bf16" and not cpu else "no"

    def __post_init__(self):
        super().__post_init__()
        check(
            self.mixed_precision in GAN_MIXED_PRECISION,
            f"mixed_precision must be one of {GAN_MIXED_PRECISION} for GAN training "
            f"(fp16 would need a grad scaler per optimizer), got {self.mixed_precision!r}",
        )
        check(not self.compile, "compile is not supported by the GAN trainers; set compile: false")
        check(self.sample_every >= 0, "sample_every must be >= 0 (0 = only at the end)")


@dataclass(frozen=True)
class StarGANTrainConfig(GANTrainConfig):
    """StarGAN v2 / Med-StyleGAN2 training (shared keys on GANTrainConfig / TrainLoopConfig).

    latent_dim / style_dim: sizes of z and of the style code. base_dim / max_conv_dim: conv
        widths (first level, cap). g_downsamplings: generator encoder halvings (the image side
        must be divisible by 2**g_downsamplings; StarGAN v2 uses log2(size) - 4, i.e. 4 at 256).
    g_bottleneck_blocks: residual blocks at the bottleneck. mapping_dim: mapping MLP width.
    mapping_lr: the mapping network's learning rate (StarGAN v2: f_lr = 1e-6).
    lambda_reg / lambda_sty / lambda_cyc: R1, style-reconstruction and cycle weights.
    lambda_ds: initial diversity-sensitive weight (Med-StyleGAN2: 2), decayed linearly to 0
        over ds_iter steps. w_hpf: must be 0 (no face-landmark high-pass branch).
    n_sample_per_domain: source images per domain in samples.png.
    """

    latent_dim: int = 16
    style_dim: int = 64
    base_dim: int = 64
    max_conv_dim: int = 512
    g_downsamplings: int = 4
    g_bottleneck_blocks: int = 2
    mapping_dim: int = 512
    mapping_lr: float = 1e-6
    lambda_reg: float = 1.0
    lambda_sty: float = 1.0
    lambda_ds: float = 2.0
    lambda_cyc: float = 1.0
    ds_iter: int = 100_000
    w_hpf: float = 0.0
    n_sample_per_domain: int = 2

    def __post_init__(self):
        super().__post_init__()
        for key in ("latent_dim", "style_dim", "base_dim", "max_conv_dim", "mapping_dim"):
            check(getattr(self, key) >= 1, f"{key} must be >= 1, got {getattr(self, key)}")
        check(self.max_conv_dim >= self.base_dim, "max_conv_dim must be >= base_dim")
        check(self.g_downsamplings >= 0, "g_downsamplings must be >= 0")
        check(self.g_bottleneck_blocks >= 0, "g_bottleneck_blocks must be >= 0")
        check(self.mapping_lr > 0, f"mapping_lr must be > 0, got {self.mapping_lr}")
        for key in ("lambda_reg", "lambda_sty", "lambda_ds", "lambda_cyc"):
            check(getattr(self, key) >= 0, f"{key} must be >= 0, got {getattr(self, key)}")
        check(self.ds_iter >= 1, f"ds_iter must be >= 1, got {self.ds_iter}")
        check(
            self.w_hpf == 0,
            f"w_hpf must be 0 (Med-StyleGAN2 drops StarGAN v2's face-mask high-pass branch), "
            f"got {self.w_hpf}",
        )
        check(self.n_sample_per_domain >= 1, "n_sample_per_domain must be >= 1")


@dataclass(frozen=True)
class DCGANTrainConfig(GANTrainConfig):
    """Class-conditional DCGAN training (shared keys on GANTrainConfig / TrainLoopConfig).

    latent_dim: z size. embed_dim: class-embedding size fed to the generator with z.
    base_dim / max_conv_dim: conv widths at the image side / cap. upsamplings: transposed convs
        (the image side must be divisible by 2**upsamplings; 4 at 64 px, 6 at 256 px starts
        from 4 x 4). n_sample_per_class: columns of samples.png.
    """

    lr: float = 2e-4
    adam_beta1: float = 0.5
    adam_beta2: float = 0.999
    weight_decay: float = 0.0
    latent_dim: int = 100
    embed_dim: int = 50
    base_dim: int = 64
    max_conv_dim: int = 512
    upsamplings: int = 4
    n_sample_per_class: int = 8

    def __post_init__(self):
        super().__post_init__()
        for key in ("latent_dim", "embed_dim", "base_dim", "max_conv_dim", "upsamplings"):
            check(getattr(self, key) >= 1, f"{key} must be >= 1, got {getattr(self, key)}")
        check(self.n_sample_per_class >= 1, "n_sample_per_class must be >= 1")
