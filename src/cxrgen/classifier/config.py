"""The guidance classifier's training keys: :class:`ClassifierTrainConfig` (section ``classifier``).

There is no noise-schedule key: the classifier always trains on the diffusion model's saved
``scheduler/`` (:func:`cxrgen.classifier.train.train_classifier`), so the schedule is typed once,
in the ``diffusion`` section.
"""

from __future__ import annotations

from dataclasses import dataclass

from cxrgen.config import check
from cxrgen.diffusion.model import check_unet_shape
from cxrgen.training.loop_config import TrainLoopConfig


@dataclass(frozen=True)
class ClassifierTrainConfig(TrainLoopConfig):
    """Noise-aware classifier training (shared keys are documented on TrainLoopConfig).

    block_out_channels / layers_per_block / attention_resolutions / mid_attention /
    attention_head_dim / norm_num_groups / dropout: the UNet-encoder architecture.
    max_depth: training timesteps are drawn from [0, L], L = round(max_depth * T): guidance
        only queries t <= the inversion depth, so the pipeline sets it to invert.depth.
    valid_split: split name evaluated after training. valid_bins: timestep bins of [0, L]
        in the validation table. valid_batch_size: evaluation batch.
    """

    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 0.05
    max_steps: int = 400
    warmup_steps: int = 40
    checkpoint_every: int = 100
    balanced_sampling: bool = True
    block_out_channels: tuple[int, ...] = (16, 32, 64, 128)
    layers_per_block: int = 1
    attention_resolutions: tuple[int, ...] = ()
    mid_attention: bool = True
    attention_head_dim: int = 16
    norm_num_groups: int = 8
    dropout: float = 0.0
    max_depth: float = 1.0
    valid_split: str = "calibration"
    valid_bins: int = 10
    valid_batch_size: int = 64

    def __post_init__(self):
        super().__post_init__()
        check_unet_shape(self)
        check(0 < self.max_depth <= 1, f"max_depth must be in (0, 1], got {self.max_depth}")
        check(self.valid_bins >= 1, "valid_bins must be >= 1")
        check(self.valid_batch_size >= 1, "valid_batch_size must be >= 1")
