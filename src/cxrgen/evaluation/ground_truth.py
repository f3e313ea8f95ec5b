"""Counterfactuals of the phantoms against their exact ground truth (healthy twin, lesion mask).

Only the phantoms have both: the image as it would be without its lesion and the lesion's
pixels. ``ground_truth_table`` reports

* on the images with a non-empty lesion mask (subset ``lesion images``): the localisation of
  the anomaly maps against the true lesion mask (pixel AUROC pooled and mean per image,
  pointing game, best-threshold Dice; :func:`cxrgen.evaluation.localisation.mask_agreement`),
  and the counterfactual's error against the true healthy image, mean |counterfactual -
  healthy| inside the lesion (``cf_error_inside``) and outside it (``cf_error_outside``); an
  ideal counterfactual has both ~0. The same for the original (``original_error_inside`` is
  the lesion's contrast, ``original_error_outside`` 0 for phantoms) so the reduction shows:
  ``lesion_removed_fraction`` = 1 - cf_error_inside / original_error_inside (1: the lesion is
  gone exactly; 0: untouched). Errors are per-image means averaged over the images; the
  fraction is the ratio of those averages (a ratio per image is unstable for faint lesions);
  ``change_outside_over_inside``: the mean |counterfactual - original| outside the lesion
  over the same inside it (ratio of the averages; 0: the method changed only the lesion);
* on the negative images (``is_positive`` False, subset ``normal images``): ``cf_change``,
  the mean |counterfactual - original|, how much the method changes healthy images.

``FAINT`` (``fainter half``) names the lesion images whose contrast (``orig_in``) is at most
the median of their split: the pixel metrics are repeated on them (:func:`fainter_half`).

Every image array is float in [0, 1]: the store's ``healthy.npy`` (uint8/uint16) must be
scaled by the caller with :func:`cxrgen.data.geometry.dequantize`, as the originals are.
Arrays are read in chunks of ``chunk`` rows as float32, summed in float64 (memory maps stay
on disk); the result does not depend on the chunk size. Long format: metric, value, n_images,
subset, threshold (the best Dice threshold, NaN for the other metrics).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from cxrgen.config import check
from cxrgen.errors import DataError
from cxrgen.evaluation import bootstrap
from cxrgen.evaluation.localisation import MAX_POOLED_PIXELS, mask_agreement

log = logging.getLogger(__name__)

LESION, NORMAL, FAINT = "lesion images", "normal images", "fainter half"
COLUMNS = ("metric", "value", "n_images", "subset", "threshold", "ci_low", "ci_high")


def _float_images(name: str, array: np.ndarray, shape: tuple[int, ...]) -> None:
    if array.shape != shape:
        raise DataError(f"{name} has shape {array.shape}, the anomaly maps {shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise DataError(
            f"{name} is {array.dtype}: scale it to [0, 1] float first "
            "(cxrgen.data.geometry.dequantize)"
        )


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-image mean of (B, P) ``values`` over ``mask``; NaN where the mask is empty."""
    count = mask.sum(axis=1)
    total = np.where(mask, values, 0).sum(axis=1, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _check_shapes(arrays, lesion_masks, name: str = "anomaly maps") -> tuple[int, ...]:
    if arrays.ndim != 3:
        raise DataError(f"{name} must be (N, H, W), got shape {arrays.shape}")
    if lesion_masks.shape != arrays.shape:
        raise DataError(f"lesion masks have shape {lesion_masks.shape}, the {name} {arrays.shape}")
    return arrays.shape


def lesion_rows(lesion_masks: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Rows whose lesion mask has at least one pixel."""
    n = len(lesion_masks)
    has = np.zeros(n, dtype=bool)
    for start in range(0, n, chunk):
        part = np.asarray(lesion_masks[start : start + chunk])
        has[start : start + len(part)] = part.reshape(len(part), -1).any(axis=1)
    return np.flatnonzero(has)


def lesion_agreement(
    anomaly_maps: np.ndarray,
    lesion_masks: np.ndarray,
    chunk: int = 256,
    thresholds: Sequence[float] | None = None,
    max_pixels: int = MAX_POOLED_PIXELS,
    seed: int = 0,
    rows: np.ndarray | None = None,
    groups: Sequence | None = None,
    n_boot: int = 0,
) -> pd.DataFrame:
    """Pixel AUROC, pointing game and Dice of the maps vs the true lesion masks (lesion images).

    ``rows``: the lesion images to score (:func:`lesion_rows`, or those of one split).
    ``groups``: the patient id of every row (N) for ``n_boot`` patient resamples.
    """
    check(chunk >= 1, f"chunk must be >= 1, got {chunk}")
    _check_shapes(anomaly_maps, lesion_masks)

    def masks_of(rows: np.ndarray) -> np.ndarray:
        return np.asarray(lesion_masks[rows]) != 0

    rows = lesion_rows(lesion_masks, chunk) if rows is None else np.asarray(rows, dtype=np.int64)
    ids = None if groups is None else np.asarray(groups)[rows]
    table = mask_agreement(
        anomaly_maps, rows, masks_of, thresholds, chunk, max_pixels, seed, ids, n_boot
    )
    return table.assign(subset=LESION)[list(COLUMNS)]


def image_errors(
    original: np.ndarray,
    counterfactual: np.ndarray,
    healthy: np.ndarray,
    lesion_masks: np.ndarray,
    chunk: int = 256,
) -> pd.DataFrame:
    """Per image: mean |cf - healthy| and |original - healthy| inside and outside the lesion
    (cf_in, cf_out, orig_in, orig_out; NaN for an empty region), the mean |cf - original|
    over the image, inside and outside the lesion (change, change_in, change_out) and
    whether the lesion mask has a pixel (has_lesion)."""
    check(chunk >= 1, f"chunk must be >= 1, got {chunk}")
    shape = _check_shapes(counterfactual, lesion_masks, "counterfactuals")
    for name, array in (("original", original), ("counterfactual", counterfactual)):
        _float_images(name, array, shape)
    _float_images("healthy", healthy, shape)
    n = len(counterfactual)
    has_lesion = np.zeros(n, dtype=bool)
    keys = ("cf_in", "cf_out", "orig_in", "orig_out", "change", "change_in", "change_out")
    errors = {k: np.full(n, np.nan) for k in keys}
    for start in range(0, n, chunk):
        part = slice(start, min(start + chunk, n))
        b = part.stop - start
        orig = np.asarray(original[part], dtype=np.float32).reshape(b, -1)
        cf = np.asarray(counterfactual[part], dtype=np.float32).reshape(b, -1)
        truth = np.asarray(healthy[part], dtype=np.float32).reshape(b, -1)
        lesion = np.asarray(lesion_masks[part]).reshape(b, -1) != 0
        has_lesion[part] = lesion.any(axis=1)
        cf_err, orig_err = np.abs(cf - truth), np.abs(orig - truth)
        errors["cf_in"][part] = _masked_mean(cf_err, lesion)
        errors["cf_out"][part] = _masked_mean(cf_err, ~lesion)
        errors["orig_in"][part] = _masked_mean(orig_err, lesion)
        errors["orig_out"][part] = _masked_mean(orig_err, ~lesion)
        change = np.abs(cf - orig)
        errors["change"][part] = change.mean(axis=1, dtype=np.float64)
        errors["change_in"][part] = _masked_mean(change, lesion)
        errors["change_out"][part] = _masked_mean(change, ~lesion)
    return pd.DataFrame({**errors, "has_lesion": has_lesion})


def error_summary(
    errors: pd.DataFrame,
    is_positive: Sequence[bool],
    rows: np.ndarray | None = None,
    groups: Sequence | None = None,
    n_boot: int = 0,
    seed: int = 0,
) -> pd.DataFrame:
    """The counterfactual-error rows of the module docstring from :func:`image_errors`.

    ``rows``: the images to summarise (None: all). ``groups``: the patient id of every image,
    for ``n_boot`` patient resamples (ci_low, ci_high; the removed fraction is resampled as
    the ratio of the resampled means).
    """
    positive = np.asarray(is_positive, dtype=bool)
    if positive.shape != (len(errors),):
        raise DataError(f"{positive.size} labels for {len(errors)} images")
    chosen = np.ones(len(errors), bool)
    if rows is not None:
        chosen[:] = False
        chosen[np.asarray(rows, dtype=np.int64)] = True
    has_lesion = errors["has_lesion"].to_numpy(bool)
    if (positive & ~has_lesion & chosen).any():
        log.warning(
            "%d positive images have an empty lesion mask",
            int((positive & ~has_lesion & chosen).sum()),
        )
    ids = np.arange(len(errors)).astype(str) if groups is None else np.asarray(groups).astype(str)

    def summary(key: str, subset: np.ndarray):
        values = errors[key].to_numpy(np.float64)[subset]
        finite = np.isfinite(values)
        value = float(values[finite].mean()) if finite.any() else np.nan
        if not n_boot or not finite.any():
            return value, int(finite.sum()), None
        weights = bootstrap.resample_weights(ids[subset], np.ones(len(subset)), n_boot, seed)
        return value, int(finite.sum()), bootstrap.weighted_mean(values, weights)

    def ci(boot) -> tuple[float, float]:
        return (np.nan, np.nan) if boot is None else bootstrap.interval(boot)

    lesion = np.flatnonzero(has_lesion & chosen)
    out, boots = [], {}
    for metric, key in (
        ("cf_error_inside", "cf_in"),
        ("cf_error_outside", "cf_out"),
        ("original_error_inside", "orig_in"),
        ("original_error_outside", "orig_out"),
    ):
        value, n, boots[key] = summary(key, lesion)
        out.append((metric, value, n, LESION, np.nan, *ci(boots[key])))
    cf_in, n_in = out[0][1], out[0][2]
    orig_in = out[2][1]
    removed = 1.0 - cf_in / orig_in if orig_in > 0 else np.nan
    removed_ci = (np.nan, np.nan)
    if boots["cf_in"] is not None and boots["orig_in"] is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            removed_ci = bootstrap.interval(1.0 - boots["cf_in"] / boots["orig_in"])
    out.append(("lesion_removed_fraction", removed, n_in, LESION, np.nan, *removed_ci))
    (c_in, n, b_in), (c_out, _, b_out) = summary("change_in", lesion), summary("change_out", lesion)
    ratio, ratio_ci = (c_out / c_in if c_in > 0 else np.nan), (np.nan, np.nan)
    if b_in is not None and b_out is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio_ci = bootstrap.interval(b_out / b_in)
    out.append(("change_outside_over_inside", ratio, n, LESION, np.nan, *ratio_ci))
    value, n, boot = summary("change", np.flatnonzero(~positive & chosen))
    out.append(("cf_change", value, n, NORMAL, np.nan, *ci(boot)))
    return pd.DataFrame(out, columns=list(COLUMNS))


def fainter_half(contrast: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The ``rows`` (lesion images) whose ``contrast`` is at most their median."""
    rows = np.asarray(rows, dtype=np.int64)
    if not len(rows):
        return rows
    values = np.asarray(contrast, dtype=np.float64)[rows]
    return rows[values <= np.median(values)]


def counterfactual_errors(
    original: np.ndarray,
    counterfactual: np.ndarray,
    healthy: np.ndarray,
    lesion_masks: np.ndarray,
    is_positive: Sequence[bool],
    chunk: int = 256,
) -> pd.DataFrame:
    """Error of the counterfactuals against the true healthy images (see the module docstring)."""
    errors = image_errors(original, counterfactual, healthy, lesion_masks, chunk)
    return error_summary(errors, is_positive)


def ground_truth_table(
    original: np.ndarray,
    counterfactual: np.ndarray,
    anomaly_maps: np.ndarray,
    healthy: np.ndarray,
    lesion_masks: np.ndarray,
    is_positive: Sequence[bool],
    chunk: int = 256,
    thresholds: Sequence[float] | None = None,
    max_pixels: int = MAX_POOLED_PIXELS,
    seed: int = 0,
) -> pd.DataFrame:
    """Localisation and counterfactual error of (N, H, W) arrays vs the phantoms' ground truth.

    ``original``, ``counterfactual`` and ``healthy`` are float in [0, 1]; ``lesion_masks`` is
    nonzero on lesion pixels; row i of every array is the same image. See the module docstring:
    :func:`lesion_agreement` rows, then :func:`counterfactual_errors` rows.
    """
    errors = counterfactual_errors(original, counterfactual, healthy, lesion_masks,
                                   is_positive, chunk)  # fmt: skip
    agreement = lesion_agreement(anomaly_maps, lesion_masks, chunk, thresholds, max_pixels, seed)
    return pd.concat([agreement, errors], ignore_index=True)
