"""The lung segmenter's training keys: :class:`LungSegTrainConfig` (section ``lungseg``)."""

from __future__ import annotations

from dataclasses import dataclass

from cxrgen.config import check
from cxrgen.training.loop_config import TrainLoopConfig


@dataclass(frozen=True)
class LungSegTrainConfig(TrainLoopConfig):
    """Lung segmenter training (shared keys are documented on TrainLoopConfig).

    block_out_channels / layers_per_block / norm_num_groups / dropout: the UNet (one level per
        width, each halving the side; norm_num_groups must divide every width).
    dice_weight: the loss is cross-entropy + dice_weight * (1 - soft Dice of the two lungs).
    valid_split: split of the training data set whose Dice against its own masks is written
        after training ('' = none).
    The aug_* keys move the mask with the image (nearest neighbour): shifts and zooms here are
    larger than the generative models' defaults because other data sets frame the chest
    differently.
    """

    batch_size: int = 8
    max_steps: int = 300
    lr: float = 2e-3
    warmup_steps: int = 20
    weight_decay: float = 1e-4
    ema_decay: float = 0.99
    checkpoint_every: int = 100
    aug_rotate_deg: float = 5.0
    aug_shift: float = 0.08
    aug_scale: float = 0.1
    aug_brightness: float = 0.1
    aug_contrast: float = 0.1
    block_out_channels: tuple[int, ...] = (8, 16, 32)
    layers_per_block: int = 1
    norm_num_groups: int = 4
    dropout: float = 0.0
    dice_weight: float = 1.0
    valid_split: str = "calibration"

    def __post_init__(self):
        super().__post_init__()
        check(len(self.block_out_channels) >= 1, "block_out_channels needs at least one width")
        check(all(w >= 1 for w in self.block_out_channels), "block_out_channels must be >= 1")
        check(self.layers_per_block >= 1, "layers_per_block must be >= 1")
        check(
            self.norm_num_groups >= 1, f"norm_num_groups must be >= 1, got {self.norm_num_groups}"
        )
        check(
            all(w % self.norm_num_groups == 0 for w in self.block_out_channels),
            f"norm_num_groups ({self.norm_num_groups}) must divide every block_out_channels "
            f"{self.block_out_channels}",
        )
        check(0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}")
        check(self.dice_weight >= 0, f"dice_weight must be >= 0, got {self.dice_weight}")
