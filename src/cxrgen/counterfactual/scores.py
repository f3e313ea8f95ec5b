"""Per-image statistics of a difference map d = original - counterfactual (images in [0, 1]).

``sum_abs`` is the paper's Table 2 statistic (sum of |d|, in [0, 1] intensity units, so a
256x256 image contributes at most 65,536). The others are what the evaluation compares it
with: the mean of the top fraction of |d| (a small lesion is not drowned by the rest of the
image), the sum of the positive part (opacities are bright: removing one makes the
counterfactual darker), the energy of the high-pass filtered map and the change made by
guidance alone (|reconstruction - counterfactual|, free of the inversion error). None of them
reads a mask: a score may only use what a real data set has, the image and its counterfactual
(the phantoms' true lung and lesion masks are for scoring, in the evaluation).
"""

from __future__ import annotations

import numpy as np

from cxrgen.metrics.fourier import highpass

COLUMNS = (
    "sum_abs",
    "mean_abs",
    "max_abs",
    "top_mean_abs",
    "sum_removed",
    "hpf_energy",
    "guided_sum_abs",
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
    top_fraction: float = 0.01,
    highpass_cutoff: float = 0.25,
) -> dict[str, np.ndarray]:
    """Statistics of :data:`COLUMNS` for a batch of (B, H, W) images.

    ``guided_sum_abs`` is NaN where there is no reconstruction (a translator's counterfactual).
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
    return out
