"""Detection of opacities by the size of the counterfactual change: AUROC and AP with CIs.

An image whose healthy counterfactual differs more from it (a larger statistic of
:mod:`cxrgen.counterfactual.scores`) should more likely hold an opacity, so each statistic is
a detection score of the positive class (Lung Opacity) against the negative class (Normal).
This module holds:

* :func:`bootstrap_ci`: a metric with a percentile bootstrap CI, resampled within each class;
* :func:`detection_table`: AUROC and AP of every (method, scale, statistic), long format;
* :func:`reference_rows`: the same for the noise-aware classifier's p(opacity | x, t=0), and
  the published AUROC of alpha-GAN (Nakao et al.) on RSNA Lung Opacity vs Normal;
* :func:`classifier_probabilities`: that probability, batched;
* :func:`best_setting`: the best measured counterfactual setting (deterministic ties);
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
from sklearn.metrics import average_precision_score, roc_auc_score
from torch import nn

from cxrgen.config import check
from cxrgen.errors import DataError

log = logging.getLogger(__name__)

METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "auroc": roc_auc_score,
    "ap": average_precision_score,
}
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
# by class (the paper calls the positive class 'Pneumonia'); its images were 256 x 256.
PAPER_TABLE2 = {"Normal": 2721.64, "Lung Opacity": 3684.64}
PAPER_SPLIT = "valid"
PAPER_N_PIXELS = 256 * 256


def bootstrap_ci(
    labels: np.ndarray,
    scores: np.ndarray,
    metric: Callable[[np.ndarray, np.ndarray], float],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float, float]:
    """``metric(labels, scores)`` and its (1 - alpha) percentile bootstrap interval.

    Labels are 0/1. Each resample draws the positives and the negatives with replacement
    separately, so it keeps both class counts and every resample has both classes. Seeded by
    ``seed`` (a numpy Generator): equal seeds, equal intervals.
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    check(labels.ndim == 1 and labels.shape == scores.shape, "labels and scores: equal 1-D")
    check(n_boot >= 1, f"n_boot must be >= 1, got {n_boot}")
    check(0 < alpha < 1, f"alpha must be in (0, 1), got {alpha}")
    check(bool(np.isin(labels, (0, 1)).all()), "labels must be 0 or 1")
    pos, neg = scores[labels == 1], scores[labels == 0]
    if len(pos) == 0 or len(neg) == 0:
        raise DataError(f"need both classes, got {len(pos)} positive and {len(neg)} negative")
    # Resampled here, not by scipy.stats.bootstrap (independent samples, the same design):
    # scipy needs two or more observations per class, a test set may hold a single positive.
    y = np.r_[np.ones(len(pos), np.int64), np.zeros(len(neg), np.int64)]
    rng = np.random.default_rng(seed)
    boot = np.empty(n_boot, np.float64)
    for b in range(n_boot):
        resample = np.r_[
            pos[rng.integers(0, len(pos), len(pos))], neg[rng.integers(0, len(neg), len(neg))]
        ]
        boot[b] = metric(y, resample)
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return float(metric(y, np.r_[pos, neg])), float(low), float(high)


def _binary(table: pd.DataFrame, positive_class: str, negative_class: str) -> pd.DataFrame:
    """The rows of the two classes, with a 0/1 column ``_y`` (1 = positive)."""
    check(positive_class != negative_class, "positive and negative class must differ")
    if "class_name" not in table.columns:
        raise DataError("table has no class_name column")
    rows = table[table["class_name"].isin((positive_class, negative_class))]
    return rows.assign(_y=(rows["class_name"] == positive_class).astype(np.int64))


def _metric_rows(
    y: np.ndarray, values: np.ndarray, key: dict, n_boot: int, seed: int
) -> list[dict]:
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise DataError(f"{key}: need both classes, got {n_pos} positive and {n_neg} negative")
    rows = []
    for name, metric in METRICS.items():
        value, low, high = bootstrap_ci(y, values, metric, n_boot=n_boot, seed=seed)
        rows.append(
            {**key, "metric": name, "value": value, "ci_low": low, "ci_high": high,
             "n_pos": n_pos, "n_neg": n_neg, "source": MEASURED}
        )  # fmt: skip
    return rows


def detection_table(
    scores: pd.DataFrame,
    statistics: Sequence[str],
    positive_class: str = "Lung Opacity",
    negative_class: str = "Normal",
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """AUROC and AP (with bootstrap CIs) of each statistic as a score of ``positive_class``.

    ``scores``: scores.parquet tables concatenated (columns method, scale, class_name and the
    statistics). Rows of other classes are ignored. One row per (method, scale, statistic,
    metric) with columns :data:`COLUMNS`; a statistic with any non-finite value in a
    (method, scale) (lung sums without lung masks, ``guided_sum_abs`` of stargan) is skipped
    there. Within a (method, scale) the images are ordered by image_id and every cell is
    resampled with the same ``seed`` (common resamples: the CIs of two statistics of one
    setting come from the same resampled images), so the table does not depend on the order
    of the input rows.
    """
    missing = [c for c in ("method", "scale", *statistics) if c not in scores.columns]
    if missing:
        raise DataError(f"scores table lacks columns {missing}")
    rows = _binary(scores, positive_class, negative_class)
    if rows.empty:
        raise DataError(f"no rows of class {positive_class!r} or {negative_class!r}")
    out = []
    for (method, scale), group in rows.groupby(["method", "scale"], sort=True, dropna=False):
        if "image_id" in group.columns:
            if group["image_id"].duplicated().any():
                raise DataError(
                    f"{method} scale {scale}: an image appears twice (tables repeated?)"
                )
            # resamples are drawn by position: fix it by image, not by the row order of the input
            group = group.sort_values("image_id", kind="mergesort")
        y = group["_y"].to_numpy()
        for statistic in statistics:
            values = group[statistic].to_numpy(dtype=np.float64)
            if not np.isfinite(values).all():
                log.debug(
                    "%s scale %s: %s has non-finite values, skipped", method, scale, statistic
                )
                continue
            key = {"method": method, "scale": scale, "statistic": statistic}
            out.extend(_metric_rows(y, values, key, n_boot, seed))
    return pd.DataFrame(out, columns=list(COLUMNS))


def reference_rows(
    classifier_prob: pd.DataFrame | None,
    positive_class: str = "Lung Opacity",
    negative_class: str = "Normal",
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Rows to compare :func:`detection_table` with, in its format (:data:`COLUMNS`).

    The noise-aware classifier (method 'classifier', statistic 'p_opacity_t0', AUROC and AP
    with bootstrap CIs of ``classifier_prob``: columns image_id, class_name, p_positive; none
    if it is None) and the published AUROC of alpha-GAN (Nakao et al.), without CI or counts.
    """
    out = []
    if classifier_prob is not None:
        missing = [c for c in ("image_id", "class_name", "p_positive") if c not in classifier_prob]
        if missing:
            raise DataError(f"classifier probabilities lack columns {missing}")
        rows = _binary(classifier_prob, positive_class, negative_class)
        if rows["image_id"].duplicated().any():
            raise DataError("classifier probabilities: an image appears twice")
        rows = rows.sort_values("image_id", kind="mergesort")
        values = rows["p_positive"].to_numpy(dtype=np.float64)
        if not np.isfinite(values).all():
            raise DataError("classifier probabilities: non-finite values")
        key = {"method": CLASSIFIER_METHOD, "scale": np.nan, "statistic": CLASSIFIER_STATISTIC}
        out.extend(_metric_rows(rows["_y"].to_numpy(), values, key, n_boot, seed))
    out.append(
        {"method": NAKAO_METHOD, "scale": np.nan, "statistic": "published", "metric": "auroc",
         "value": NAKAO_AUROC, "ci_low": np.nan, "ci_high": np.nan, "n_pos": np.nan,
         "n_neg": np.nan, "source": NAKAO_SOURCE}
    )  # fmt: skip
    return pd.DataFrame(out, columns=list(COLUMNS))


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


def best_setting(detection: pd.DataFrame, metric: str = "auroc") -> pd.Series:
    """The measured counterfactual row with the highest ``metric`` value.

    Reference rows (source other than 'measured', method 'classifier') are not candidates.
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
    if rows.empty:
        raise DataError(f"no measured counterfactual rows of metric {metric!r}")
    ordered = rows.sort_values(
        ["value", "method", "scale", "statistic"],
        ascending=[False, True, True, True],
        kind="mergesort",
    )
    return ordered.iloc[0]


def table2(
    scores: pd.DataFrame, split_name: str = "valid", n_pixels: int | None = None
) -> pd.DataFrame:
    """The paper's Table 2: mean, std (ddof 1) and n of per-image ``sum_abs``, with its values.

    One row per (method, scale, class_name) of ``scores`` (concatenated scores.parquet
    tables of split ``split_name``), source 'measured', then the paper's rows (method 'paper',
    scale NaN, split 'valid', std and n NaN, source 'published'; its 'Pneumonia' is class
    'Lung Opacity' here). ``mean_per_pixel`` = mean / number of pixels: for measured rows
    ``n_pixels`` (the images' H * W); for the paper's rows 65,536, assuming its images were
    256 x 256 as it states; all NaN when ``n_pixels`` is None (nothing to compare with).
    """
    missing = [c for c in ("method", "scale", "class_name", "sum_abs") if c not in scores.columns]
    if missing:
        raise DataError(f"scores table lacks columns {missing}")
    if n_pixels is not None:
        check(n_pixels >= 1, f"n_pixels must be >= 1, got {n_pixels}")
    if not np.isfinite(scores["sum_abs"].to_numpy(dtype=np.float64)).all():
        raise DataError("sum_abs has non-finite values")
    measured = (
        scores.groupby(["method", "scale", "class_name"], sort=True, dropna=False)["sum_abs"]
        .agg(mean="mean", std="std", n="size")
        .reset_index()
        .assign(split=split_name, source=MEASURED)
    )
    measured["mean_per_pixel"] = measured["mean"] / n_pixels if n_pixels else np.nan
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
        }
    )
    paper["mean_per_pixel"] = paper["mean"] / PAPER_N_PIXELS if n_pixels else np.nan
    columns = [
        "split", "method", "scale", "class_name", "mean", "std", "n", "mean_per_pixel", "source",
    ]  # fmt: skip
    return pd.concat([measured[columns], paper[columns]], ignore_index=True)
