"""Localisation of anomaly maps against the RSNA bounding boxes (or any binary target mask).

An anomaly map is one score per pixel (e.g. |original - counterfactual|); the target is the
union of an image's boxes. ``localisation_table`` reports, over the images with at least one
box (a box covering no pixel centre counts as none; other images are ignored):

* ``pixel_auroc_pooled``: AUROC of the map's values inside vs outside the boxes, pooled over
  every pixel of every boxed image (a fixed-seed uniform subsample of ``max_pixels`` pixels
  when there are more, so the number does not depend on the chunk size);
* ``pixel_auroc_mean``: the mean of the per-image AUROCs (images whose boxes cover the whole
  image have no negatives and are left out of it);
* ``pointing_game``: the share of images whose map maximum (the first one, row-major) lies in
  a box;
* ``dice``: the mean Dice of ``map >= t`` vs the box mask at the single threshold t that
  maximises it over the set (``threshold`` column); the candidates are ``N_THRESHOLDS``
  quantiles of the pooled values between the 50th and 99.9th percentile unless given.

Tables are long format: metric, value, n_images, threshold (NaN except for dice). Maps are
read in chunks of rows (a memory map stays on disk). :func:`mask_agreement` is the same
computation against any mask source; :mod:`cxrgen.evaluation.ground_truth` uses it with the
phantoms' true lesion masks.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from cxrgen.config import check
from cxrgen.errors import DataError
from cxrgen.evaluation import bootstrap

log = logging.getLogger(__name__)

MAX_POOLED_PIXELS = 2_000_000
N_THRESHOLDS = 50
THRESHOLD_QUANTILES = (0.5, 0.999)
COLUMNS = ("metric", "value", "n_images", "threshold", "ci_low", "ci_high")
N_BINS = 1024  # quantile bins of the pooled values, for the bootstrap of the pooled AUROC

# masks_of(rows) -> bool (len(rows), H, W): the target masks of those rows of the maps
MaskSource = Callable[[np.ndarray], np.ndarray]


def as_boxes(boxes) -> np.ndarray:
    """One image's boxes (list of [x, y, w, h], array, None or NaN for none) as float (m, 4)."""
    if boxes is None or (isinstance(boxes, float) and math.isnan(boxes)):
        return np.zeros((0, 4))
    rows = [np.asarray(b, dtype=np.float64) for b in boxes]  # parquet gives arrays of arrays
    if not rows:
        return np.zeros((0, 4))
    out = np.stack(rows)
    if out.ndim != 2 or out.shape[1] != 4 or not np.isfinite(out).all():
        raise DataError(f"boxes must be finite [x, y, w, h] lists, got {boxes!r}")
    if (out[:, 2:] < 0).any():
        raise DataError(f"box widths and heights must be >= 0, got {boxes!r}")
    return out


def box_mask(boxes, shape: tuple[int, int]) -> np.ndarray:
    """Union of [x, y, w, h] boxes (x = column, y = row) as a bool (H, W) mask.

    A pixel (r, c) is inside a box when its centre (c + 0.5, r + 0.5) lies in
    [x, x + w) x [y, y + h); boxes are clipped to the image.
    """
    # Written by hand: skimage.draw.rectangle rounds fractional corners with np.round (half to
    # even, so boxes starting at 1.5 and 2.5 both start at pixel 2), not by pixel centres.
    height, width = shape
    mask = np.zeros((height, width), dtype=bool)
    for x, y, w, h in as_boxes(boxes):
        # centre r + 0.5 in [y, y + h)  <=>  ceil(y - 0.5) <= r < ceil(y + h - 0.5)
        r0, r1 = (int(np.clip(math.ceil(v - 0.5), 0, height)) for v in (y, y + h))
        c0, c1 = (int(np.clip(math.ceil(v - 0.5), 0, width)) for v in (x, x + w))
        mask[r0:r1, c0:c1] = True
    return mask


def _sample_index(total: int, max_pixels: int, seed: int) -> np.ndarray | None:
    """Sorted flat indices of a uniform subsample of ``total`` pixels; None to keep all."""
    if total <= max_pixels:
        return None
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(total, size=max_pixels, replace=False))


def _chunks(rows: np.ndarray, chunk: int):
    for start in range(0, len(rows), chunk):
        yield start, rows[start : start + chunk]


def _read(maps: np.ndarray, rows: np.ndarray) -> np.ndarray:
    values = np.asarray(maps[rows], dtype=np.float64)
    if not np.isfinite(values).all():
        raise DataError(f"anomaly maps of rows {rows[0]}..{rows[-1]} have NaN or inf values")
    return values


def _masks(masks_of: MaskSource, rows: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    masks = np.asarray(masks_of(rows), dtype=bool)
    if masks.shape != shape:
        raise DataError(f"target masks have shape {masks.shape}, the maps {shape}")
    if not masks.reshape(len(rows), -1).any(axis=1).all():
        raise DataError("every evaluated image needs a non-empty target mask")
    return masks


def default_thresholds(values: np.ndarray, n: int = N_THRESHOLDS) -> np.ndarray:
    """``n`` quantiles of ``values`` between the 50th and 99.9th percentile (sorted, unique)."""
    return np.unique(np.quantile(values, np.linspace(*THRESHOLD_QUANTILES, n)))


def _dice_curve(values: np.ndarray, mask: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Dice of ``values >= t`` vs ``mask`` (non-empty) for every sorted threshold t."""
    # Counted with one searchsorted + bincount (k = number of thresholds <= value, so the pixel
    # is flagged at thresholds[:k]) instead of one comparison pass per threshold.
    n = len(thresholds)
    k = np.searchsorted(thresholds, values, side="right")
    flagged = np.bincount(k, minlength=n + 1)[::-1].cumsum()[::-1][1:]
    hits = np.bincount(k[mask], minlength=n + 1)[::-1].cumsum()[::-1][1:]
    return 2.0 * hits / (flagged + mask.sum())


def mask_agreement(
    anomaly_maps: np.ndarray,
    rows: Sequence[int],
    masks_of: MaskSource,
    thresholds: Sequence[float] | None = None,
    chunk: int = 256,
    max_pixels: int = MAX_POOLED_PIXELS,
    seed: int = 0,
    groups: Sequence | None = None,
    n_boot: int = 0,
) -> pd.DataFrame:
    """Pixel AUROC (pooled, mean per image), pointing game and best-threshold Dice of the maps'
    ``rows`` against ``masks_of(rows)`` (each mask non-empty); see the module docstring.

    ``thresholds``: the Dice candidates; one value gives the Dice at that threshold (one
    chosen on another split). ``groups`` (patient id of each of ``rows``) and ``n_boot`` > 0
    add patient-level bootstrap 95% intervals (ci_low, ci_high) of every metric; the pooled
    AUROC's resamples count pixels in :data:`N_BINS` quantile bins of the pooled values
    (pairs within a bin count one half), the others resample per-image values.
    """
    check(chunk >= 1, f"chunk must be >= 1, got {chunk}")
    check(max_pixels >= 2, f"max_pixels must be >= 2, got {max_pixels}")
    rows = np.asarray(rows, dtype=np.int64)
    n = len(rows)
    if n == 0:
        log.warning("no image has a target mask: localisation metrics are NaN")
        metrics = ("pixel_auroc_pooled", "pixel_auroc_mean", "pointing_game", "dice")
        return pd.DataFrame(
            {"metric": metrics, "value": np.nan, "n_images": 0, "threshold": np.nan,
             "ci_low": np.nan, "ci_high": np.nan}
        )  # fmt: skip
    n_pixels = int(np.prod(anomaly_maps.shape[1:]))
    sample = _sample_index(n * n_pixels, max_pixels, seed)
    if sample is not None:
        log.info("pooled pixel AUROC on %d of %d pixels (seed %d)", max_pixels, n * n_pixels, seed)

    pooled_scores, pooled_labels, aurocs, hit = [], [], np.full(n, np.nan), np.zeros(n, bool)
    for start, part in _chunks(rows, chunk):
        values = _read(anomaly_maps, part).reshape(len(part), -1)
        masks = _masks(masks_of, part, (len(part), *anomaly_maps.shape[1:])).reshape(len(part), -1)
        if sample is None:
            pooled_scores.append(values.ravel())
            pooled_labels.append(masks.ravel())
        else:
            lo, hi = np.searchsorted(sample, [start * n_pixels, (start + len(part)) * n_pixels])
            flat = sample[lo:hi] - start * n_pixels
            pooled_scores.append(values.ravel()[flat])
            pooled_labels.append(masks.ravel()[flat])
        for i, (v, m) in enumerate(zip(values, masks, strict=True)):
            hit[start + i] = m[np.argmax(v)]
            if not m.all():
                aurocs[start + i] = roc_auc_score(m, v)
    scores, labels = np.concatenate(pooled_scores), np.concatenate(pooled_labels)
    pooled = roc_auc_score(labels, scores) if 0 < labels.sum() < len(labels) else np.nan

    if thresholds is None:
        thr = default_thresholds(scores)
    else:
        thr = np.unique(np.asarray(thresholds, dtype=np.float64))
        check(len(thr) > 0 and np.isfinite(thr).all(), "thresholds must be finite and non-empty")
    edges = np.unique(np.quantile(scores, np.linspace(0, 1, N_BINS + 1)[1:-1]))
    dice = np.zeros((n, len(thr)))
    pos_hist = np.zeros((n, len(edges) + 1))
    neg_hist = np.zeros((n, len(edges) + 1))
    for start, part in _chunks(rows, chunk):
        values = _read(anomaly_maps, part).reshape(len(part), -1)
        masks = _masks(masks_of, part, (len(part), *anomaly_maps.shape[1:])).reshape(len(part), -1)
        for i, (v, m) in enumerate(zip(values, masks, strict=True)):
            dice[start + i] = _dice_curve(v, m, thr)
            if n_boot:
                k = np.searchsorted(edges, v, side="right")
                pos_hist[start + i] = np.bincount(k[m], minlength=len(edges) + 1)
                neg_hist[start + i] = np.bincount(k[~m], minlength=len(edges) + 1)
    mean_dice = dice.mean(axis=0)
    best = int(np.argmax(mean_dice))  # ties: the lowest threshold

    n_auroc = int(np.isfinite(aurocs).sum())
    cis = [(np.nan, np.nan)] * 4
    if n_boot:
        ids = np.arange(n) if groups is None else np.asarray(groups).astype(str)
        check(len(ids) == n, f"{len(ids)} patient ids for {n} images")
        weights = bootstrap.resample_weights(ids, np.ones(n, np.int64), n_boot, seed)
        boot_auroc = bootstrap.auroc_from_counts(weights @ pos_hist, weights @ neg_hist)
        cis = [
            bootstrap.interval(boot_auroc),
            bootstrap.interval(bootstrap.weighted_mean(aurocs, weights)),
            bootstrap.interval(bootstrap.weighted_mean(hit.astype(float), weights)),
            bootstrap.interval(bootstrap.weighted_mean(dice[:, best], weights)),
        ]
    return pd.DataFrame(
        [
            ("pixel_auroc_pooled", float(pooled), n, np.nan, *cis[0]),
            ("pixel_auroc_mean", float(np.nanmean(aurocs)) if n_auroc else np.nan, n_auroc,
             np.nan, *cis[1]),
            ("pointing_game", float(hit.mean()), n, np.nan, *cis[2]),
            ("dice", float(mean_dice[best]), n, float(thr[best]), *cis[3]),
        ],
        columns=list(COLUMNS),
    )  # fmt: skip


def localisation_table(
    anomaly_maps: np.ndarray,
    boxes_per_image: Sequence,
    thresholds: Sequence[float] | None = None,
    chunk: int = 256,
    max_pixels: int = MAX_POOLED_PIXELS,
    seed: int = 0,
    rows: np.ndarray | None = None,
    groups: Sequence | None = None,
    n_boot: int = 0,
) -> pd.DataFrame:
    """Localisation metrics of (N, H, W) maps vs each image's [x, y, w, h] boxes (stored grid).

    ``boxes_per_image[i]`` is row i's list of boxes (empty, None or NaN for none); images
    whose boxes cover no pixel centre are ignored, and so are rows not in ``rows`` (None: all;
    e.g. the rows of one split). ``groups``: the patient id of every row (N), for the patient
    bootstrap of ``n_boot`` resamples (see :func:`mask_agreement`). Long format: metric,
    value, n_images, threshold (the Dice threshold, NaN for the other metrics), ci_low, ci_high.
    """
    if anomaly_maps.ndim != 3:
        raise DataError(f"anomaly maps must be (N, H, W), got shape {anomaly_maps.shape}")
    if len(boxes_per_image) != len(anomaly_maps):
        raise DataError(f"{len(boxes_per_image)} box lists for {len(anomaly_maps)} anomaly maps")
    shape = anomaly_maps.shape[1:]
    boxes = [as_boxes(b) for b in boxes_per_image]
    has_box = np.array([len(b) > 0 for b in boxes], dtype=bool)
    covered = np.array([len(b) > 0 and box_mask(b, shape).any() for b in boxes], dtype=bool)
    if rows is not None:
        chosen = np.zeros(len(boxes), dtype=bool)
        chosen[np.asarray(rows, dtype=np.int64)] = True
        has_box, covered = has_box & chosen, covered & chosen
    if (has_box & ~covered).any():
        log.warning(
            "%d images have boxes covering no pixel centre", int((has_box & ~covered).sum())
        )

    def masks_of(rows: np.ndarray) -> np.ndarray:
        return np.stack([box_mask(boxes[r], shape) for r in rows])

    kept = np.flatnonzero(covered)
    ids = None if groups is None else np.asarray(groups)[kept]
    return mask_agreement(
        anomaly_maps, kept, masks_of, thresholds, chunk, max_pixels, seed, ids, n_boot
    )
