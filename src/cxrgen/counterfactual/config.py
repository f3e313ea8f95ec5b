"""The counterfactual stage's config: :class:`CounterfactualConfig`, the methods, scale names."""

from __future__ import annotations

from dataclasses import dataclass

from cxrgen.config import check
from cxrgen.counterfactual import guidance
from cxrgen.data.classes import HEALTHY_CLASS
from cxrgen.devices import check_device_name

METHODS = ("cfg", "cg", "renoise", "msr", "thor", "stargan")
CG_CONDITIONINGS = ("unconditional", "target")


@dataclass(frozen=True)
class CounterfactualConfig:
    """How to decode counterfactuals (the method and scale are the job's, not config keys).

    target_class: the class to translate every image to (the paper: Normal). batch_size:
    images per forward pass (the result does not depend on it). clip_denoised: clamp the
    predicted x_0 to [-1, 1] at every step. cg_conditioning: the UNet's class under classifier
    guidance, 'unconditional' (the null class, as Wolleb et al.'s unconditional model) or
    'target'. top_fraction: the share of
    pixels in the top_mean_abs score. highpass_cutoff: the hpf_energy score's cut-off, a
    fraction of Nyquist. precision: 'bf16' autocast on CUDA or 'fp32'. device: auto/cpu/cuda.
    seed: the noise of methods renoise / msr and the random styles of method stargan at
    scale > 0 (cfg, cg, thor use none).

    Method msr: first_pass ('method/scale', a counterfactual of the same latents) gives the
    map; mask_smoothing (Gaussian sigma, a fraction of the width) smooths its removed part;
    the mask is the map above its mask_quantile over every image of calibration_split
    (pooled pixels, labels unread), dilated by mask_dilation (a fraction of the width).
    Method thor: harmonise every harmonise_every-th state with residual_scale (|x0_hat - x|
    in [-1, 1] units at which the prediction is kept whole) and the same smoothing.
    """

    target_class: str = HEALTHY_CLASS
    batch_size: int = 16
    clip_denoised: bool = False
    cg_conditioning: str = "unconditional"
    top_fraction: float = 0.01
    highpass_cutoff: float = 0.25
    precision: str = "bf16"
    device: str = "auto"
    seed: int = 0
    first_pass: str = "cg/10"
    mask_quantile: float = 0.97
    mask_smoothing: float = 0.03
    mask_dilation: float = 0.03
    calibration_split: str = "calibration"
    harmonise_every: int = 3
    residual_scale: float = 0.2

    @property
    def first_pass_setting(self) -> tuple[str, float]:
        """msr's first pass as (method, scale)."""
        method, _, scale = self.first_pass.partition("/")
        return method, float(scale)

    def __post_init__(self):
        check(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        method, _, scale = self.first_pass.partition("/")
        check(
            method in ("cfg", "cg", "renoise", "thor") and scale != "",
            f"first_pass must be 'method/scale' of cfg, cg, renoise or thor, got "
            f"{self.first_pass!r}",
        )
        check(0 < self.mask_quantile < 1, "mask_quantile must be in (0, 1)")
        check(0 <= self.mask_smoothing < 0.5, "mask_smoothing must be in [0, 0.5)")
        check(0 <= self.mask_dilation < 0.5, "mask_dilation must be in [0, 0.5)")
        check(self.harmonise_every >= 1, "harmonise_every must be >= 1")
        check(self.residual_scale > 0, "residual_scale must be > 0")
        check(self.batch_size >= 1, "batch_size must be >= 1")
        check(
            self.cg_conditioning in CG_CONDITIONINGS,
            f"cg_conditioning must be one of {CG_CONDITIONINGS}, got {self.cg_conditioning!r}",
        )
        check(0 < self.top_fraction <= 1, "top_fraction must be in (0, 1]")
        check(0 < self.highpass_cutoff < 1.5, "highpass_cutoff must be in (0, 1.5)")
        check(
            self.precision in guidance.PRECISIONS,
            f"precision must be one of {guidance.PRECISIONS}, got {self.precision!r}",
        )
        check_device_name(self.device)


def scale_name(scale: float) -> str:
    """The scale as it appears in paths and tables: '3', '0.5', '10' (shortest float form)."""
    return f"{float(scale):g}"
