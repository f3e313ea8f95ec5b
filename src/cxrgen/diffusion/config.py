"""The diffusion model's training keys: :class:`DiffusionTrainConfig` (config ``diffusion``).

The noise schedule (``num_train_timesteps`` / ``beta_schedule``) is set here only: the
classifier and every later stage read the copy saved in the model's ``scheduler/`` folder.
"""

from __future__ import annotations

from dataclasses import dataclass

from cxrgen.config import check
from cxrgen.diffusion.model import BETA_SCHEDULES, check_unet_shape
from cxrgen.training.loop_config import TrainLoopConfig


@dataclass(frozen=True)
class DiffusionTrainConfig(TrainLoopConfig):
    """Class-conditional DDPM training (the shared keys are documented on TrainLoopConfig).

    block_out_channels: UNet widths per level (the image side must be divisible by
        2**(levels-1)). layers_per_block: ResNet blocks per level.
    attention_resolutions: feature-map sides with self-attention (AttnDown/UpBlock2D), e.g.
        (16,) for 64x64 images with 3 levels (64, 32, 16). mid_attention: attention in the
        bottleneck. attention_head_dim: channels per attention head.
    norm_num_groups: GroupNorm groups; must divide every width. dropout: in the ResNet blocks.
    num_train_timesteps / beta_schedule ('linear' or 'cosine' = squaredcos_cap_v2): the DDPM
        noise schedule (epsilon prediction), saved in scheduler/; the guidance classifier
        trains on that saved copy.
    label_dropout: probability that a training label is replaced by the null class K, which
        trains the unconditional model classifier-free guidance needs (0.1-0.2).
    focus_timesteps / focus_probability: with probability focus_probability a sample's
        timestep is drawn uniformly below focus_timesteps x T instead of over all T. The
        counterfactuals only run the model from the inversion depth down, so a small CPU
        budget is better spent there; the rest of the draws keep the model usable from pure
        noise (the sample grid). focus_probability 0 = uniform timesteps (the paper).
    sample_every: also write samples/step-N.png every N steps (0 = only samples.png at the end).
    n_sample_per_class / sample_steps / sample_guidance_scale: the preview grid (DDIM steps,
        classifier-free guidance weight w; 0 = plain conditional).
    """

    batch_size: int = 8
    lr: float = 1e-3
    max_steps: int = 1000
    warmup_steps: int = 50
    checkpoint_every: int = 200
    block_out_channels: tuple[int, ...] = (16, 32, 64, 128)
    layers_per_block: int = 1
    attention_resolutions: tuple[int, ...] = (16,)
    mid_attention: bool = True
    attention_head_dim: int = 16
    norm_num_groups: int = 8
    dropout: float = 0.1
    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"
    label_dropout: float = 0.15
    focus_timesteps: float = 1.0
    focus_probability: float = 0.0
    sample_every: int = 0
    n_sample_per_class: int = 8
    sample_steps: int = 50
    sample_guidance_scale: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        check_unet_shape(self)
        check(self.num_train_timesteps >= 2, "num_train_timesteps must be >= 2")
        check(
            self.beta_schedule in BETA_SCHEDULES,
            f"beta_schedule must be one of {sorted(BETA_SCHEDULES)}, got {self.beta_schedule!r}",
        )
        check(
            0 <= self.label_dropout < 1,
            f"label_dropout must be in [0, 1), got {self.label_dropout}",
        )
        check(
            0 < self.focus_timesteps <= 1,
            f"focus_timesteps is a fraction of the timesteps in (0, 1], got {self.focus_timesteps}",
        )
        check(
            0 <= self.focus_probability <= 1,
            f"focus_probability must be in [0, 1], got {self.focus_probability}",
        )
        check(self.sample_every >= 0, "sample_every must be >= 0 (0 = only at the end)")
        check(self.n_sample_per_class >= 1, "n_sample_per_class must be >= 1")
        check(
            1 <= self.sample_steps < self.num_train_timesteps,
            f"sample_steps must be in [1, num_train_timesteps={self.num_train_timesteps})",
        )
        check(self.sample_guidance_scale >= 0, "sample_guidance_scale must be >= 0")
