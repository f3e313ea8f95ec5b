"""Per-image statistics of a difference map d = original - counterfactual (images in [0, 1]).

``sum_abs`` is the paper's Table 2 statistic (sum of |d|, in [0, 1] intensity units, so a
256x256 image contributes at most 65,536). The others are what the evaluation compares it
with: the mean of the top fraction of |d| (a small lesion is not drowned by the rest of the
image), the sum of the positive part (opacities are bright: removing one makes the
counterfactual darker), the energy of the high-pass filtered map, the change made by guidance
alone (|reconstruction - counterfactual|, free of the inversion error), and sums inside the
lungs and per lung where a lung mask exists (labels 1 = right lung, 2 = left lung, or 0/1).
"""

from __future__ import annotations

import numpy as np

from cxrgen.metrics.spectra import highpass

COLUMNS = (
    "sum_abs",
    "mean_abs",
    "max_abs",
    "top_mean_abs",
    "sum_removed",
    "hpf_energy",
    "guided_sum_abs",
    "lung_sum_abs",
    "right_lung_sum_abs",
    "left_lung_sum_abs",
)


def top_mean(values: np.ndarray, fraction: float) -> np.ndarray:
    """Mean of the largest ``fraction`` of each row's values (at least one value)."""
    flat = values.reshape(len(values), -1)
    k = max(1, int(round(fraction * flat.shape[1])))
    return np.partition(flat, flat.shape[1] - k, axis=1)[:, -k:].mean(axis=1)


def difference_scores(
    original: np.ndarray,
    counterfactual: np.ndarray,
    reconstruction: np.ndarray | None,
    lung_masks: np.ndarray | None = None,
    top_fraction: float = 0.01,
    highpass_cutoff: float = 0.25,
) -> dict[str, np.ndarray]:
    """Statistics of :data:`COLUMNS` for a batch of (B, H, W) images.

    NaN where there is no lung mask (lung sums) or no reconstruction (``guided_sum_abs``).
    """
    diff = (original - counterfactual).astype(np.float32)
    absd = np.abs(diff)
    n = len(diff)
    out = {
        "sum_abs": absd.sum(axis=(1, 2), dtype=np.float64),
        "mean_abs": absd.mean(axis=(1, 2), dtype=np.float64),
        "max_abs": absd.max(axis=(1, 2)).astype(np.float64),
        "top_mean_abs": top_mean(absd, top_fraction).astype(np.float64),
        "sum_removed": np.clip(diff, 0, None).sum(axis=(1, 2), dtype=np.float64),
        "hpf_energy": (highpass(diff, highpass_cutoff) ** 2).mean(axis=(1, 2), dtype=np.float64),
    }
    nan = np.full(n, np.nan)
    if reconstruction is None:
        out["guided_sum_abs"] = nan
    else:
        change = np.abs(reconstruction - counterfactual)
        out["guided_sum_abs"] = change.sum(axis=(1, 2), dtype=np.float64)
    if lung_masks is None:
        out.update(lung_sum_abs=nan, right_lung_sum_abs=nan, left_lung_sum_abs=nan)
    else:
        masks = np.asarray(lung_masks)
        out["lung_sum_abs"] = (absd * (masks > 0)).sum(axis=(1, 2), dtype=np.float64)
        labelled = masks.reshape(n, -1).max(axis=1) >= 2  # per image: 0/1 masks have no sides
        for name, value in (("right_lung_sum_abs", 1), ("left_lung_sum_abs", 2)):
            inside = (absd * (masks == value)).sum(axis=(1, 2), dtype=np.float64)
            out[name] = np.where(labelled, inside, nan)
    return out
