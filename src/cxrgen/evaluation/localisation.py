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
read in chunks of rows (a memory map stays on disk); the second pass (Dice, the bootstrap's
bins) reuses each image's sorted values from the first when they fit in ``KEEP_BYTES``, so a
map smoothed on access is smoothed once. :func:`mask_agreement` is the same
computation against any mask source; :mod:`cxrgen.evaluation.ground_truth` uses it with the
phantoms' true lesion masks.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from cxrgen.config import check
from cxrgen.errors import DataError
from cxrgen.evaluation import bootstrap

log = logging.getLogger(__name__)

MAX_POOLED_PIXELS = 2_000_000
N_THRESHOLDS = 50
THRESHOLD_QUANTILES = (0.5, 0.999)
COLUMNS = ("metric", "value", "n_images", "threshold", "ci_low", "ci_high")
N_BINS = 1024  # quantile bins of the pooled values, for the bootstrap of the pooled AUROC
KEEP_BYTES = 1 << 30  # the first pass's sorted values kept for the second up to this size

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


@functools.lru_cache(maxsize=4)
def _sample_index(total: int, max_pixels: int, seed: int) -> np.ndarray | None:
    """Sorted flat indices of a uniform subsample of ``total`` pixels; None to keep all.

    Kept (read-only) for the next call: every map, smoothing and setting of a split draws the
    same sample, and drawing 2M of 40M pixels without replacement takes seconds.
    """
    if total <= max_pixels:
        return None
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(total, size=max_pixels, replace=False))
    sample.flags.writeable = False
    return sample


def _chunks(rows: np.ndarray, chunk: int):
    for start in range(0, len(rows), chunk):
        yield start, rows[start : start + chunk]


def _read(maps: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The maps of ``rows`` as float32 or float64 (as stored; other types as float64)."""
    values = np.asarray(maps[rows])
    if values.dtype not in (np.float32, np.float64):
        values = values.astype(np.float64)
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


def _split_sorted(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An image's values inside and outside its mask, each sorted: every per-image metric below
    is a count of them against a threshold, so one sort serves the AUROC, the Dice curve and
    the bootstrap's bins (one searchsorted pass of each pixel through the thresholds and
    bins instead cost most of an evaluation's time). Sorted in the maps' own type (float32
    sorts faster; the order is the same), returned as float64."""
    return tuple(np.sort(values[part]).astype(np.float64, copy=False) for part in (mask, ~mask))


def _auroc_sorted(positives: np.ndarray, negatives: np.ndarray) -> float:
    """AUROC of sorted positive and negative scores (both non-empty): the share of
    (positive, negative) pairs in the right order, ties counting one half (the area under
    scikit-learn's ROC curve, without its input checks and about 10x faster here)."""
    below = np.searchsorted(negatives, positives, side="left").sum(dtype=np.int64)
    not_above = np.searchsorted(negatives, positives, side="right").sum(dtype=np.int64)
    return float((below + not_above) / (2.0 * len(positives) * len(negatives)))


def _auroc(positive: np.ndarray, values: np.ndarray) -> float:
    """AUROC of ``values`` for the bool labels ``positive`` (both classes present)."""
    return _auroc_sorted(*_split_sorted(values, positive))


def _bin_counts(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """How many values fall in each bin [edges[b - 1], edges[b]) of sorted ``edges``
    (len(edges) + 1 bins, the first and last open)."""
    below = np.searchsorted(sorted_values, edges, side="left")
    return np.diff(below, prepend=0, append=len(sorted_values))


def default_thresholds(values: np.ndarray, n: int = N_THRESHOLDS) -> np.ndarray:
    """``n`` quantiles of ``values`` between the 50th and 99.9th percentile (sorted, unique)."""
    return np.unique(np.quantile(values, np.linspace(*THRESHOLD_QUANTILES, n)))


def _dice_curve(inside: np.ndarray, outside: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Dice of ``values >= t`` vs the mask for every threshold t, from the sorted values inside
    (non-empty) and outside the mask."""
    hits = len(inside) - np.searchsorted(inside, thresholds, side="left")
    flagged = hits + len(outside) - np.searchsorted(outside, thresholds, side="left")
    return 2.0 * hits / (flagged + len(inside))


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

    def read_chunks():
        for start, part in _chunks(rows, chunk):
            values = _read(anomaly_maps, part).reshape(len(part), -1)
            shape = (len(part), *anomaly_maps.shape[1:])
            yield start, values, _masks(masks_of, part, shape).reshape(len(part), -1)

    def sorted_images():
        for start, values, masks in read_chunks():
            for i, (v, m) in enumerate(zip(values, masks, strict=True)):
                yield start + i, *_split_sorted(v, m)

    kept = [] if n * n_pixels * 8 <= KEEP_BYTES else None  # each image's sorted float64 values
    pooled_scores, pooled_labels, aurocs, hit = [], [], np.full(n, np.nan), np.zeros(n, bool)
    for start, values, masks in read_chunks():
        if sample is None:
            pooled_scores.append(values.ravel())
            pooled_labels.append(masks.ravel())
        else:
            lo, hi = np.searchsorted(sample, [start * n_pixels, (start + len(values)) * n_pixels])
            flat = sample[lo:hi] - start * n_pixels
            pooled_scores.append(values.ravel()[flat])
            pooled_labels.append(masks.ravel()[flat])
        for i, (v, m) in enumerate(zip(values, masks, strict=True)):
            hit[start + i] = m[np.argmax(v)]
            inside, outside = _split_sorted(v, m)
            if len(outside):
                aurocs[start + i] = _auroc_sorted(inside, outside)
            if kept is not None:
                kept.append((start + i, inside, outside))
    scores = np.concatenate(pooled_scores).astype(np.float64, copy=False)
    labels = np.concatenate(pooled_labels)
    pooled = _auroc(labels, scores) if 0 < labels.sum() < len(labels) else np.nan

    if thresholds is None:
        thr = default_thresholds(scores)
    else:
        thr = np.unique(np.asarray(thresholds, dtype=np.float64))
        check(len(thr) > 0 and np.isfinite(thr).all(), "thresholds must be finite and non-empty")
    edges = np.unique(np.quantile(scores, np.linspace(0, 1, N_BINS + 1)[1:-1]))
    dice = np.zeros((n, len(thr)))
    pos_hist = np.zeros((n, len(edges) + 1))
    neg_hist = np.zeros((n, len(edges) + 1))
    for i, inside, outside in kept if kept is not None else sorted_images():
        dice[i] = _dice_curve(inside, outside, thr)
        if n_boot:
            pos_hist[i], neg_hist[i] = _bin_counts(inside, edges), _bin_counts(outside, edges)
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
    chosen = np.ones(len(boxes), dtype=bool)
    if rows is not None:
        chosen = np.zeros(len(boxes), dtype=bool)
        chosen[np.asarray(rows, dtype=np.int64)] = True
    has_box = np.array([len(b) > 0 for b in boxes], dtype=bool) & chosen
    covered = has_box.copy()
    covered[has_box] = [box_mask(boxes[r], shape).any() for r in np.flatnonzero(has_box)]
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
