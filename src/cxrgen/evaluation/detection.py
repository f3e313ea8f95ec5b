"""Detection of opacities by the size of the counterfactual change: AUROC and AP with CIs.

An image whose healthy counterfactual differs more from it (a larger statistic of
:mod:`cxrgen.counterfactual.scores`) should more likely hold an opacity, so each statistic is
a detection score of the positive class (Lung Opacity) against the negative class (Normal).
This module holds:

* :func:`bootstrap_ci`: a metric with a percentile bootstrap CI that resamples patients;
* :func:`detection_table`: AUROC and AP of every (method, scale, split, statistic), long
  format, with patient-level bootstrap intervals;
* :func:`reference_rows`: the same for the noise-aware classifier's p(opacity | x, t=0), and
  the published AUROC of alpha-GAN (Nakao et al.) on RSNA Lung Opacity vs Normal;
* :func:`classifier_probabilities`: that probability, batched;
* :func:`best_setting`: the best measured counterfactual setting on a split (the
  calibration split; deterministic ties);
* :func:`table2`: the paper's Table 2 (mean sum of |difference| per class) and its values.

Every table carries a ``source`` column: 'measured' for values computed here, a description
of the publication for values copied from one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from cxrgen.config import check
from cxrgen.data.classes import HEALTHY_CLASS, LUNG_OPACITY, NORMAL, POSITIVE_CLASS
from cxrgen.errors import DataError
from cxrgen.evaluation import bootstrap

log = logging.getLogger(__name__)

COLUMNS = (
    "method", "scale", "statistic", "metric", "value", "ci_low", "ci_high", "n_pos", "n_neg",
    "source",
)  # fmt: skip
MEASURED = "measured"
CLASSIFIER_METHOD = "classifier"
CLASSIFIER_STATISTIC = "p_opacity_t0"
# alpha-GAN (Nakao et al.): the published AUROC of RSNA Lung Opacity vs Normal, no CI given.
NAKAO_METHOD = "alpha-GAN (Nakao et al.)"
NAKAO_AUROC = 0.838
NAKAO_SOURCE = "published, RSNA Lung Opacity vs Normal"
# The paper's Table 2: mean per-image sum of |original - counterfactual| on its valid split,
# by class (the paper calls the positive class 'Pneumonia'). It states neither the image size
# nor the intensity range the sums were taken over.
PAPER_TABLE2 = {NORMAL: 2721.64, LUNG_OPACITY: 3684.64}
PAPER_SPLIT = "valid"
PAPER_UNITS = "as published: image size and intensity range not stated"


def bootstrap_ci(
    labels: np.ndarray,
    scores: np.ndarray,
    metric: Callable[[np.ndarray, np.ndarray], float],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    groups: np.ndarray | None = None,
) -> tuple[float, float, float]:
    """``metric(labels, scores)`` and its (1 - alpha) percentile bootstrap interval.

    Labels are 0/1. ``groups`` are the patient ids: each resample draws patients with
    replacement within their stratum (:func:`cxrgen.evaluation.bootstrap.patient_strata`),
    all images of a patient together; None treats every image as its own patient (then every
    resample keeps both class counts). Seeded: equal seeds, equal intervals.
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    check(labels.ndim == 1 and labels.shape == scores.shape, "labels and scores: equal 1-D")
    check(n_boot >= 1, f"n_boot must be >= 1, got {n_boot}")
    check(0 < alpha < 1, f"alpha must be in (0, 1), got {alpha}")
    check(bool(np.isin(labels, (0, 1)).all()), "labels must be 0 or 1")
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == len(labels):
        n_neg = len(labels) - n_pos
        raise DataError(f"need both classes, got {n_pos} positive and {n_neg} negative")
    groups = np.arange(len(labels)) if groups is None else np.asarray(groups)
    check(groups.shape == labels.shape, "groups and labels: equal length")
    weights = bootstrap.resample_weights(
        groups, bootstrap.patient_strata(groups, labels == 1), n_boot, seed
    )
    index = np.arange(len(labels))
    boot = np.full(n_boot, np.nan)
    for b in range(n_boot):
        drawn = np.repeat(index, weights[b])
        if 0 < labels[drawn].sum() < len(drawn):
            boot[b] = metric(labels[drawn], scores[drawn])
    low, high = bootstrap.interval(boot, alpha)
    return float(metric(labels, scores)), low, high


# metric name -> (resample weights, 0/1 labels, scores) -> one value per resample
WEIGHTED = {"auroc": bootstrap.weighted_auroc, "ap": bootstrap.weighted_ap}


def _binary(table: pd.DataFrame, positive_class: str, negative_class: str) -> pd.DataFrame:
    """The rows of the two classes, with a 0/1 column ``_y`` (1 = positive)."""
    check(positive_class != negative_class, "positive and negative class must differ")
    if "class_name" not in table.columns:
        raise DataError("table has no class_name column")
    rows = table[table["class_name"].isin((positive_class, negative_class))]
    return rows.assign(_y=(rows["class_name"] == positive_class).astype(np.int64))


def _metric_rows(y: np.ndarray, values: np.ndarray, key: dict, weights: np.ndarray) -> list[dict]:
    """AUROC and AP of ``values`` with the percentile interval over the resample ``weights``."""
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise DataError(f"{key}: need both classes, got {n_pos} positive and {n_neg} negative")
    rows = []
    for name, weighted in WEIGHTED.items():
        value = float(weighted(y, values)[0])
        low, high = bootstrap.interval(weighted(y, values, weights))
        rows.append(
            {**key, "metric": name, "value": value, "ci_low": low, "ci_high": high,
             "n_pos": n_pos, "n_neg": n_neg, "source": MEASURED}
        )  # fmt: skip
    return rows


def _patients(group: pd.DataFrame) -> np.ndarray:
    """Patient ids of the rows (each row its own patient where the table has none)."""
    if "patient_id" in group.columns:
        return group["patient_id"].astype(str).to_numpy()
    return group["image_id"].astype(str).to_numpy()


def _weights(group: pd.DataFrame, n_boot: int, seed: int) -> np.ndarray:
    patients = _patients(group)
    strata = bootstrap.patient_strata(patients, group["_y"].to_numpy() == 1)
    return bootstrap.resample_weights(patients, strata, n_boot, seed)


def detection_table(
    scores: pd.DataFrame,
    statistics: Sequence[str],
    positive_class: str = POSITIVE_CLASS,
    negative_class: str = HEALTHY_CLASS,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """AUROC and AP (with patient bootstrap CIs) of each statistic as a score of ``positive_class``.

    ``scores``: scores.parquet tables concatenated (columns method, scale, class_name, the
    statistics, and where present split, patient_id, label_informed). Rows of other classes
    are ignored. One row per (method, scale, split, statistic, metric) with columns
    :data:`COLUMNS` (+ split, label_informed); a statistic with any non-finite value in a
    (method, scale) (``guided_sum_abs`` of stargan) is skipped there. Within a (method,
    scale, split) the images are ordered by image_id and every statistic is resampled with
    the same patient draws (common resamples), so the table does not depend on the order of
    the input rows.
    """
    missing = [c for c in ("method", "scale", *statistics) if c not in scores.columns]
    if missing:
        raise DataError(f"scores table lacks columns {missing}")
    rows = _binary(scores, positive_class, negative_class)
    if rows.empty:
        raise DataError(f"no rows of class {positive_class!r} or {negative_class!r}")
    if "split" not in rows.columns:
        rows = rows.assign(split="")
    informed = "label_informed" in rows.columns
    out = []
    for (method, scale, split), group in rows.groupby(
        ["method", "scale", "split"], sort=True, dropna=False
    ):
        if "image_id" in group.columns:
            if group["image_id"].duplicated().any():
                raise DataError(
                    f"{method} scale {scale}: an image appears twice (tables repeated?)"
                )
            # resamples are drawn by patient id: fix the order by image, not by the input
            group = group.sort_values("image_id", kind="mergesort")
        y = group["_y"].to_numpy()
        weights = _weights(group, n_boot, seed)
        for statistic in statistics:
            values = group[statistic].to_numpy(dtype=np.float64)
            if not np.isfinite(values).all():
                log.debug(
                    "%s scale %s: %s has non-finite values, skipped", method, scale, statistic
                )
                continue
            key = {"method": method, "scale": scale, "split": split, "statistic": statistic}
            if informed:
                key["label_informed"] = bool(group["label_informed"].any())
            out.extend(_metric_rows(y, values, key, weights))
    columns = [*COLUMNS, "split"] + (["label_informed"] if informed else [])
    return pd.DataFrame(out, columns=columns)


def reference_rows(
    classifier_prob: pd.DataFrame | None,
    positive_class: str = POSITIVE_CLASS,
    negative_class: str = HEALTHY_CLASS,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Rows to compare :func:`detection_table` with, in its format (:data:`COLUMNS`).

    The noise-aware classifier (method 'classifier', statistic 'p_opacity_t0', AUROC and AP
    with patient bootstrap CIs of ``classifier_prob``: columns image_id, class_name,
    p_positive, and where present split and patient_id; none if it is None) and the
    published AUROC of alpha-GAN (Nakao et al.), without CI or counts.
    """
    out = []
    if classifier_prob is not None:
        missing = [c for c in ("image_id", "class_name", "p_positive") if c not in classifier_prob]
        if missing:
            raise DataError(f"classifier probabilities lack columns {missing}")
        rows = _binary(classifier_prob, positive_class, negative_class)
        if "split" not in rows.columns:
            rows = rows.assign(split="")
        for split, group in rows.groupby("split", sort=True):
            if group["image_id"].duplicated().any():
                raise DataError("classifier probabilities: an image appears twice")
            group = group.sort_values("image_id", kind="mergesort")
            values = group["p_positive"].to_numpy(dtype=np.float64)
            if not np.isfinite(values).all():
                raise DataError("classifier probabilities: non-finite values")
            key = {"method": CLASSIFIER_METHOD, "scale": np.nan, "split": split,
                   "statistic": CLASSIFIER_STATISTIC}  # fmt: skip
            weights = _weights(group, n_boot, seed)
            out.extend(_metric_rows(group["_y"].to_numpy(), values, key, weights))
    out.append(
        {"method": NAKAO_METHOD, "scale": np.nan, "statistic": "published", "metric": "auroc",
         "value": NAKAO_AUROC, "ci_low": np.nan, "ci_high": np.nan, "n_pos": np.nan,
         "n_neg": np.nan, "source": NAKAO_SOURCE, "split": "published"}
    )  # fmt: skip
    return pd.DataFrame(out, columns=[*COLUMNS, "split"])


@torch.no_grad()
def classifier_probabilities(
    classifier: nn.Module, images, batch_size: int = 64, positive_label: int = 1
) -> np.ndarray:
    """p(positive_label | x, t=0) of the noise-aware classifier, float64 (M,).

    ``images``: float (M, H, W) in [0, 1], array-like (a memmap is read ``batch_size`` rows
    at a time), scaled to [-1, 1] as the classifier was trained. Evaluated in eval mode on
    the classifier's device; its mode is restored afterwards. Does not depend on the batch
    size (up to float rounding).
    """
    check(batch_size >= 1, f"batch_size must be >= 1, got {batch_size}")
    num_classes = getattr(classifier, "num_classes", None)
    if num_classes is not None:
        check(
            0 <= positive_label < num_classes,
            f"positive_label {positive_label} is not a class of a {num_classes}-class classifier",
        )
    if len(np.shape(images)) != 3:
        raise DataError(f"images must be (M, H, W), got shape {np.shape(images)}")
    param = next(classifier.parameters())
    was_training = classifier.training
    classifier.eval()
    out = np.empty(len(images), np.float64)
    try:
        for start in range(0, len(images), batch_size):
            batch = np.asarray(images[start : start + batch_size], dtype=np.float32)
            if batch.size and (batch.min() < 0 or batch.max() > 1 or np.isnan(batch).any()):
                raise DataError(f"images must be in [0, 1]; rows from {start} are not")
            x = torch.from_numpy(batch).to(param.device, param.dtype).unsqueeze(1) * 2 - 1
            logits = classifier(x, 0).float()
            p = torch.softmax(logits, dim=-1)[:, positive_label]
            out[start : start + len(batch)] = p.double().cpu().numpy()
    finally:
        classifier.train(was_training)
    return out


def best_setting(
    detection: pd.DataFrame, metric: str = "auroc", split: str | None = None
) -> pd.Series:
    """The measured counterfactual row with the highest ``metric`` value (on ``split``).

    ``split``: the rows of that split only (the calibration split: a setting is chosen there
    and reported on the test split); None: every row. Reference rows (source other than
    'measured', method 'classifier') and label-informed rows are not candidates.
    Ties go to the lowest method name, then scale, then statistic, so the choice is
    deterministic.
    """
    rows = detection[
        (detection["metric"] == metric)
        & (detection["method"] != CLASSIFIER_METHOD)
        & np.isfinite(detection["value"].to_numpy(dtype=np.float64))
    ]
    if "source" in rows.columns:
        rows = rows[rows["source"] == MEASURED]
    if "label_informed" in rows.columns:
        rows = rows[~rows["label_informed"].astype(bool)]
    if split is not None:
        rows = rows[rows["split"] == split]
    if rows.empty:
        raise DataError(f"no label-blind measured rows of metric {metric!r} (split {split})")
    ordered = rows.sort_values(
        ["value", "method", "scale", "statistic"],
        ascending=[False, True, True, True],
        kind="mergesort",
    )
    return ordered.iloc[0]


def table2(scores: pd.DataFrame, grid: tuple[int, int] | None = None) -> pd.DataFrame:
    """The paper's Table 2: mean, std (ddof 1) and n of per-image ``sum_abs``, with its values.

    One row per (split, method, scale, class_name) of ``scores`` (concatenated scores.parquet
    tables; split '' where they have no split column), source 'measured', then the paper's
    rows (method 'paper', scale NaN, split 'valid', std and n NaN, source 'published'; its
    'Pneumonia' is class 'Lung Opacity' here). ``units`` says what a value is: the measured
    sums are of |original - counterfactual| with intensities in [0, 1] over the images' grid
    (``grid`` = (H, W)), so ``mean_per_pixel`` = mean / (H W) compares grids; the paper states
    neither its intensity range nor its image size, so its rows have no per-pixel value and
    are not comparable in absolute terms (only the ratio between the classes is).
    """
    missing = [c for c in ("method", "scale", "class_name", "sum_abs") if c not in scores.columns]
    if missing:
        raise DataError(f"scores table lacks columns {missing}")
    if grid is not None:
        check(len(grid) == 2 and min(grid) >= 1, f"grid must be (H, W) >= 1, got {grid}")
    if not np.isfinite(scores["sum_abs"].to_numpy(dtype=np.float64)).all():
        raise DataError("sum_abs has non-finite values")
    if "split" not in scores.columns:
        scores = scores.assign(split="")
    measured = (
        scores.groupby(["split", "method", "scale", "class_name"], sort=True, dropna=False)[
            "sum_abs"
        ]
        .agg(mean="mean", std="std", n="size")
        .reset_index()
        .assign(source=MEASURED)
    )
    if grid is None:
        measured["mean_per_pixel"] = np.nan
        measured["units"] = "sum of |difference|, intensities in [0, 1]"
    else:
        measured["mean_per_pixel"] = measured["mean"] / (grid[0] * grid[1])
        measured["units"] = f"sum of |difference|, intensities in [0, 1], {grid[0]}x{grid[1]} grid"
    paper = pd.DataFrame(
        {
            "method": "paper",
            "scale": np.nan,
            "class_name": list(PAPER_TABLE2),
            "mean": list(PAPER_TABLE2.values()),
            "std": np.nan,
            "n": np.nan,
            "split": PAPER_SPLIT,
            "source": "published",
            "mean_per_pixel": np.nan,
            "units": PAPER_UNITS,
        }
    )
    columns = [
        "split", "method", "scale", "class_name", "mean", "std", "n", "mean_per_pixel", "units",
        "source",
    ]  # fmt: skip
    return pd.concat([measured[columns], paper[columns]], ignore_index=True)
