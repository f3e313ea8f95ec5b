"""Patient-level bootstrap: 95% intervals that resample patients, not images.

Images of one patient (follow-ups) are correlated, so an interval that resamples images as if
they were independent is too narrow. Every interval of the evaluation resamples *patients*
with replacement, all images of a drawn patient together, stratified by the patient's class
(a patient's stratum is its most frequent class, ties to the positive class, as the split
does), so every resample keeps the number of patients of each class.

A resample is a vector of image weights (how often each image was drawn), so one draw serves
every metric: :func:`resample_weights` gives the (B, N) weight matrix once, and the weighted
metrics below evaluate all B resamples at once. They are written here, vectorised over
resamples, because scikit-learn's metrics take one weight vector per call: 1,000 calls per
metric and setting made the evaluation several times slower. Each equals its scikit-learn
counterpart with ``sample_weight`` (tested).
"""

from __future__ import annotations

import numpy as np

from cxrgen.config import check
from cxrgen.errors import DataError

ALPHA = 0.05


def patient_strata(patient_ids, positive) -> np.ndarray:
    """Per image: 1 if its patient's images are mostly positive (ties: positive), else 0."""
    patient_ids = np.asarray(patient_ids).astype(str)
    positive = np.asarray(positive, dtype=bool)
    check(patient_ids.shape == positive.shape, "patient_ids and positive: equal length")
    _, inverse = np.unique(patient_ids, return_inverse=True)
    n_pos = np.bincount(inverse, weights=positive.astype(float))
    n_all = np.bincount(inverse)
    return (2 * n_pos >= n_all).astype(np.int64)[inverse]


def resample_weights(patient_ids, strata, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, N) int32 weights: how often each image is drawn in each patient resample.

    Patients are drawn with replacement within each stratum (as many as the stratum has);
    a drawn patient brings all its images. Seeded: equal inputs and seed, equal weights; the
    result depends on the patients and strata, not on the order of the images.
    """
    check(n_boot >= 1, f"n_boot must be >= 1, got {n_boot}")
    patient_ids = np.asarray(patient_ids).astype(str)
    strata = np.asarray(strata)
    check(patient_ids.shape == strata.shape, "patient_ids and strata: equal length")
    patients, inverse = np.unique(patient_ids, return_inverse=True)  # sorted: order-free
    stratum_of = np.zeros(len(patients), dtype=strata.dtype)
    stratum_of[inverse] = strata
    rng = np.random.default_rng(seed)
    counts = np.zeros((n_boot, len(patients)), np.int32)
    for stratum in np.unique(stratum_of):
        members = np.flatnonzero(stratum_of == stratum)
        draws = rng.integers(0, len(members), size=(n_boot, len(members)))
        for b in range(n_boot):
            counts[b, members] += np.bincount(draws[b], minlength=len(members)).astype(np.int32)
    return counts[:, inverse]


def _grouped(scores: np.ndarray, y: np.ndarray, weights: np.ndarray, descending: bool):
    """Positive and negative weight per distinct score, (B, G), in score order."""
    order = np.argsort(-scores if descending else scores, kind="mergesort")
    s = scores[order]
    starts = np.r_[0, np.flatnonzero(np.diff(s) != 0) + 1]
    w = weights[:, order].astype(np.float64)
    yy = y[order].astype(bool)
    pos = np.add.reduceat(np.where(yy, w, 0.0), starts, axis=1)
    neg = np.add.reduceat(np.where(yy, 0.0, w), starts, axis=1)
    return pos, neg


def _check(y, scores, weights) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(y).astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    check(y.ndim == 1 and y.shape == scores.shape, "y and scores: equal 1-D")
    weights = np.ones((1, len(y))) if weights is None else np.atleast_2d(weights)
    check(weights.shape[1] == len(y), f"weights need {len(y)} columns, got {weights.shape}")
    if len(y) and not np.isfinite(scores).all():
        raise DataError("scores have NaN or inf values")
    return y, scores, weights


def auroc_from_counts(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUROC from per-bin positive and negative weights (B, G), bins in ascending score order.

    Pairs in the same bin count one half (ties). NaN where a class has no weight.
    """
    below = np.cumsum(neg, axis=1) - neg  # negatives strictly below each bin
    wins = (pos * (below + 0.5 * neg)).sum(axis=1)
    total = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, wins / np.where(total > 0, total, 1), np.nan)


def weighted_auroc(y, scores, weights=None) -> np.ndarray:
    """AUROC of ``scores`` for labels ``y`` (0/1) under each row of ``weights`` (B, N)."""
    y, scores, weights = _check(y, scores, weights)
    pos, neg = _grouped(scores, y, weights, descending=False)
    return auroc_from_counts(pos, neg)


def weighted_ap(y, scores, weights=None) -> np.ndarray:
    """Average precision (scikit-learn's step-wise definition) under each row of ``weights``."""
    y, scores, weights = _check(y, scores, weights)
    pos, neg = _grouped(scores, y, weights, descending=True)
    tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    total = tp[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / np.where(tp + fp > 0, tp + fp, 1), 0.0)
        recall_step = pos / np.where(total > 0, total, 1)
    ap = (recall_step * precision).sum(axis=1)
    return np.where(total[:, 0] > 0, ap, np.nan)


def weighted_mean(values, weights) -> np.ndarray:
    """Mean of ``values`` (N,) under each row of ``weights`` (B, N), NaN values left out."""
    values = np.asarray(values, dtype=np.float64)
    weights = np.atleast_2d(weights).astype(np.float64)
    finite = np.isfinite(values)
    w = weights * finite
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (w * np.where(finite, values, 0)).sum(axis=1) / total, np.nan)


def interval(boot: np.ndarray, alpha: float = ALPHA) -> tuple[float, float]:
    """Percentile interval of the finite bootstrap values (NaN, NaN if there are none)."""
    boot = np.asarray(boot, dtype=np.float64)
    boot = boot[np.isfinite(boot)]
    if boot.size == 0:
        return np.nan, np.nan
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)
