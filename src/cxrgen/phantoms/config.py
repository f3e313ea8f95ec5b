"""The RSNA-layout phantom set's config (:func:`cxrgen.phantoms.rsna.make_rsna_phantoms`).

Kept apart from the generator so that the modules planning patients and images can name it
without importing the generator that imports them.
"""

from __future__ import annotations

from dataclasses import dataclass

from cxrgen.config import check
from cxrgen.phantoms.dicom_writer import SYNTAXES
from cxrgen.phantoms.lesions import PATTERNS


@dataclass(frozen=True)
class PhantomConfig:
    """RSNA-layout DICOM phantoms; every field has a default and is checked on construction."""

    seed: int = 0
    n_patients: int = 150
    max_images_per_patient: int = 3
    frac_follow_up: float = 0.3  # patients with more than one image
    min_size: int = 160  # native rows and cols drawn independently in [min_size, max_size]
    max_size: int = 256
    frac_normal: float = 0.45
    frac_opacity: float = 0.35  # the rest: "No Lung Opacity / Not Normal"
    frac_bilateral: float = 0.45
    frac_resolved: float = 0.25  # follow-ups of an opacity patient whose opacity has cleared
    frac_ap: float = 0.35
    opacity_patterns: tuple[str, ...] = PATTERNS
    opacity_pattern_weights: tuple[float, ...] = (0.55, 0.15, 0.3)
    n_corrupt: int = 3
    transfer_syntaxes: tuple[str, ...] = tuple(SYNTAXES)
    transfer_syntax_weights: tuple[float, ...] = (0.15, 0.15, 0.1, 0.25, 0.35)
    bits_stored: tuple[int, ...] = (8, 12, 16)
    frac_monochrome1: float = 0.15
    frac_windowed: float = 0.15
    frac_rescaled: float = 0.15
    jpeg_quality: int = 92

    def __post_init__(self) -> None:
        check(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        check(self.n_patients >= 1, f"n_patients must be >= 1, got {self.n_patients}")
        check(
            self.max_images_per_patient >= 1,
            f"max_images_per_patient must be >= 1, got {self.max_images_per_patient}",
        )
        check(
            32 <= self.min_size <= self.max_size <= 4096,
            f"need 32 <= min_size <= max_size <= 4096, got {self.min_size}, {self.max_size}",
        )
        for name in (
            "frac_follow_up",
            "frac_normal",
            "frac_opacity",
            "frac_bilateral",
            "frac_resolved",
            "frac_ap",
            "frac_monochrome1",
            "frac_windowed",
            "frac_rescaled",
        ):
            value = getattr(self, name)
            check(0.0 <= value <= 1.0, f"{name} must be in [0, 1], got {value}")
        check(
            self.frac_normal + self.frac_opacity <= 1.0 + 1e-9,
            f"frac_normal + frac_opacity must be <= 1, got {self.frac_normal + self.frac_opacity}",
        )
        check(self.n_corrupt >= 0, f"n_corrupt must be >= 0, got {self.n_corrupt}")
        _check_choice("opacity_patterns", self.opacity_patterns, PATTERNS)
        _check_weights(
            "opacity_pattern_weights", self.opacity_pattern_weights, len(self.opacity_patterns)
        )
        _check_choice("transfer_syntaxes", self.transfer_syntaxes, tuple(SYNTAXES))
        _check_weights(
            "transfer_syntax_weights", self.transfer_syntax_weights, len(self.transfer_syntaxes)
        )
        _check_choice("bits_stored", self.bits_stored, (8, 12, 16))
        check(
            1 <= self.jpeg_quality <= 100,
            f"jpeg_quality must be in 1..100, got {self.jpeg_quality}",
        )


def _check_choice(name: str, values: tuple, allowed: tuple) -> None:
    check(len(values) > 0, f"{name} must not be empty")
    bad = [v for v in values if v not in allowed]
    check(not bad, f"{name} has unknown value(s) {bad}; allowed: {list(allowed)}")
    check(len(set(values)) == len(values), f"{name} has duplicates: {list(values)}")


def _check_weights(name: str, weights: tuple, n: int) -> None:
    check(len(weights) == n, f"{name} needs {n} entries (one per choice), got {len(weights)}")
    check(all(w >= 0 for w in weights) and sum(weights) > 0, f"{name} must be >= 0, not all 0")
