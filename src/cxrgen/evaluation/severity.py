"""Opacity severity (RALO scores) predicted from the difference image of a counterfactual.

The first paper's goal: if the change a healthy counterfactual makes is a map of the disease,
its size per lung should rank the radiologists' RALO extent and opacity scores (0-4 per lung,
0-8 in total). ``lung_features`` reduces the difference maps to a few numbers per lung and
``severity_cv`` regresses each score on them with patient-grouped cross-validation, next to a
baseline that sees only the image classifier's probability of the positive class.
``rank_table`` adds the fit-free reading: how well one feature of the map, as it is, ranks
the scores (a regression fitted per fold on a few dozen images scrambles part of the ranks
its features carry).

Lung sides follow the radiological convention: in a PA radiograph the patient's right lung
appears on the IMAGE LEFT. Lung masks use labels 1 = right lung and 2 = left lung; where an
image has no such mask (none given, or a 0/1 mask without sides) the image halves stand in:
right lung = columns < W/2, left lung = the other columns. The evaluation passes no true mask:
a feature may only use what a real data set has, so the fixed geometric split of the image into
halves stands in for the lungs (the phantoms' true lung masks only score), unless it is given
masks predicted by the lung segmenter (:mod:`cxrgen.lungseg`, ``cxrgen evaluate --lung-masks``).

:func:`transfer_table` is the held-out reading: the regression fitted on the calibration
images predicts the test images; severity is reported among the opacity images (does the map
measure how much opacity there is?) beside all images (where Normal images at score 0 make
part of the rank correlation a detection result).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.linear_model import RidgeCV
from sklearn.metrics import mean_absolute_error
from sklearn.model_selection import GroupKFold, KFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cxrgen.config import check
from cxrgen.data.store import RALO_COLUMNS, RALO_TOTALS
from cxrgen.errors import DataError
from cxrgen.evaluation import bootstrap

log = logging.getLogger(__name__)

SIDES = ("right", "left")
FEATURES = ("sum_abs", "mean_abs", "top_mean_abs", "sum_removed")
# RALO score -> (lungs whose features predict it, largest possible value): a lung's own score
# (0-4) from that lung, a total (0-8) from both
SCORES = {
    c: (SIDES, 8.0) if c in RALO_TOTALS else ((c.rsplit("_", 1)[1],), 4.0) for c in RALO_COLUMNS
}
RIDGE_ALPHAS = np.logspace(-3, 3, 13)
MIN_ROWS = 3  # fewer usable rows than this give NaN metrics instead of a fit


def _side_features(absd: np.ndarray, diff: np.ndarray, fraction: float) -> dict[str, float]:
    """The :data:`FEATURES` of the pixels of one lung (1-D arrays); NaN means for no pixels."""
    if absd.size == 0:
        return dict(sum_abs=0.0, mean_abs=np.nan, top_mean_abs=np.nan, sum_removed=0.0)
    k = max(1, int(round(fraction * absd.size)))
    return dict(
        sum_abs=float(absd.sum(dtype=np.float64)),
        mean_abs=float(absd.mean(dtype=np.float64)),
        top_mean_abs=float(np.partition(absd, absd.size - k)[-k:].mean(dtype=np.float64)),
        sum_removed=float(np.clip(diff, 0, None).sum(dtype=np.float64)),
    )


def lung_features(
    diff: np.ndarray,
    absdiff: np.ndarray,
    lung_masks: np.ndarray | None = None,
    top_fraction: float = 0.01,
    chunk: int = 256,
) -> pd.DataFrame:
    """Per image (N, H, W) and lung: sum, mean and top-``top_fraction`` mean of |d|, sum of d+.

    ``diff`` is original - counterfactual (positive where an opacity was removed), ``absdiff``
    its absolute value; both may be memory maps, read ``chunk`` rows at a time. One row per
    image in input order: ``row`` (position), ``region`` ('lung mask' where the image's mask
    has label 2, else 'image half') and ``{right,left}_{sum_abs,mean_abs,top_mean_abs,
    sum_removed}``. A side with no pixels in its mask has sums 0 and NaN means.
    """
    check(0 < top_fraction <= 1, f"top_fraction must be in (0, 1], got {top_fraction}")
    check(chunk >= 1, f"chunk must be >= 1, got {chunk}")
    if diff.ndim != 3 or diff.shape != absdiff.shape:
        raise DataError(f"diff {diff.shape} and absdiff {absdiff.shape} must be equal (N, H, W)")
    if lung_masks is not None and lung_masks.shape != diff.shape:
        raise DataError(f"lung_masks {lung_masks.shape} do not match the maps {diff.shape}")
    n, _, width = diff.shape
    halves = np.zeros(diff.shape[1:], dtype=np.uint8)
    halves[:, np.arange(width) < width / 2] = 1  # patient's right lung: image left
    halves[:, np.arange(width) >= width / 2] = 2
    records = []
    for start in range(0, n, chunk):
        d = np.asarray(diff[start : start + chunk], dtype=np.float32)
        a = np.asarray(absdiff[start : start + chunk], dtype=np.float32)
        masks = None if lung_masks is None else np.asarray(lung_masks[start : start + chunk])
        for i in range(len(d)):
            sided = masks is not None and bool((masks[i] == 2).any())
            labels = masks[i] if sided else halves
            record = {"row": start + i, "region": "lung mask" if sided else "image half"}
            for side, value in zip(SIDES, (1, 2), strict=True):
                inside = labels == value
                feats = _side_features(a[i][inside], d[i][inside], top_fraction)
                record.update({f"{side}_{name}": v for name, v in feats.items()})
            records.append(record)
    columns = ["row", "region"] + [f"{s}_{f}" for s in SIDES for f in FEATURES]
    return pd.DataFrame.from_records(records, columns=columns)


def _columns(features: pd.DataFrame, names: list[str], sides: tuple[str, ...]) -> list[str]:
    """Feature columns for a score: ``{side}_{name}`` per lung where it exists, else ``name``."""
    out = []
    for name in names:
        sided = [f"{side}_{name}" for side in sides if f"{side}_{name}" in features]
        if len(sided) == len(sides):
            out.extend(sided)
        elif name in features:
            out.append(name)  # a per-image value (the classifier's probability) for every lung
        else:
            raise DataError(f"feature {name!r} is neither a column nor {sides} lung columns")
    return out


def _matrix(features: pd.DataFrame, names: list[str], sides: tuple[str, ...]) -> np.ndarray:
    """The regressors of a score: ``_columns`` of each name; a name written '+name' is one
    regressor, summed over the score's lungs (the total of both halves for a total score)."""
    parts = []
    for name in names:
        pooled = name.startswith("+")
        block = features[_columns(features, [name.lstrip("+")], sides)].to_numpy(np.float64)
        parts.append(block.sum(axis=1, keepdims=True) if pooled else block)
    return np.concatenate(parts, axis=1)


def _splitter(groups: np.ndarray, folds: int, seed: int) -> GroupKFold | KFold:
    """Patient-grouped folds; leave one patient out if there are fewer patients than folds."""
    n_groups = len(np.unique(groups))
    if n_groups >= folds:
        return GroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    if n_groups >= 2:
        log.warning("%d patients < %d folds: leaving one patient out per fold", n_groups, folds)
        return GroupKFold(n_splits=n_groups)
    # one patient (or no ids given): rows are the only units there are
    return KFold(n_splits=min(folds, len(groups)), shuffle=True, random_state=seed)


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho; NaN when either side is constant (rho is undefined)."""
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return np.nan
    return float(spearmanr(x, y).statistic)


def severity_cv(
    features: pd.DataFrame,
    targets: pd.DataFrame,
    groups: np.ndarray | pd.Series | None,
    feature_sets: dict[str, list[str]],
    folds: int = 5,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cross-validated prediction of each RALO score in ``targets`` from each feature set.

    ``features`` and ``targets`` are aligned by position (one row per image); ``groups`` are the
    patient ids (folds never split a patient; None: every row its own patient). A feature set
    maps a name to feature names: ``sum_abs`` means ``right_sum_abs`` for the right-lung scores,
    ``left_sum_abs`` for the left and both for the totals; a name that is itself a column (e.g.
    ``p_positive``) is used as is for every score. The regressor is a standardised ridge
    regression (alpha by generalised cross-validation on the training folds); predictions are
    clipped to the score's range (0-4, totals 0-8). Rows with a NaN target or feature are left
    out of that score. Returns the long table (feature_set, score, metric in spearman/mae,
    value, n) and the predictions (row, score, feature_set, true, predicted); ``row`` is the
    features' ``row`` column where there is one, else the position.

    Features that carry no information give a rho a little BELOW zero (about -0.2 at n = 60,
    five folds), not zero: the ridge then predicts about each training fold's mean, which is
    anti-correlated with the held-out fold's values. Compare a feature set with the baseline,
    not with zero.
    """
    check(folds >= 2, f"folds must be >= 2, got {folds}")
    check(len(feature_sets) > 0, "feature_sets is empty")
    if len(features) != len(targets):
        raise DataError(f"{len(features)} feature rows but {len(targets)} target rows")
    scores = [s for s in SCORES if s in targets]
    if not scores:
        raise DataError(f"targets have none of the RALO scores {list(SCORES)}")
    groups = np.arange(len(features)) if groups is None else np.asarray(groups)
    if len(groups) != len(features):
        raise DataError(f"{len(groups)} groups for {len(features)} rows")
    rows = features["row"].to_numpy() if "row" in features else np.arange(len(features))
    table, predictions = [], []
    for set_name, names in feature_sets.items():
        for score in scores:
            sides, top = SCORES[score]
            x = _matrix(features, list(names), sides)
            y = targets[score].to_numpy(dtype=np.float64)
            keep = np.isfinite(y) & np.isfinite(x).all(axis=1)
            n = int(keep.sum())
            rho = mae = np.nan
            if n < MIN_ROWS:
                log.warning("%s / %s: %d usable rows, no fit", set_name, score, n)
            else:
                model = regression()
                split = _splitter(groups[keep], folds, seed)
                pred = cross_val_predict(model, x[keep], y[keep], groups=groups[keep], cv=split)
                pred = np.clip(pred, 0.0, top)
                rho = _spearman(pred, y[keep])
                mae = float(mean_absolute_error(y[keep], pred))
                predictions.append(
                    pd.DataFrame({"row": rows[keep], "score": score, "feature_set": set_name,
                                  "true": y[keep], "predicted": pred})
                )  # fmt: skip
            for metric, value in (("spearman", rho), ("mae", mae)):
                table.append(
                    dict(feature_set=set_name, score=score, metric=metric, value=value, n=n)
                )
    columns = ["row", "score", "feature_set", "true", "predicted"]
    preds = (
        pd.concat(predictions, ignore_index=True) if predictions else pd.DataFrame(columns=columns)
    )
    return pd.DataFrame(table), preds


RANK_FEATURE = "sum_removed"
RANK_FEATURE_SET = "sum_removed per lung, no fit"


def rank_table(
    features: pd.DataFrame,
    targets: pd.DataFrame,
    feature: str = RANK_FEATURE,
    name: str = RANK_FEATURE_SET,
) -> pd.DataFrame:
    """Spearman's rho of one feature with each RALO score, without a fit.

    A per-lung feature (``{side}_{feature}`` columns, default ``sum_removed``: the intensity
    the counterfactual took away inside the lung) gives the lung's own value for a per-lung
    score and the sum over both lungs for a total; a per-image column (``p_positive``) is
    used as it is. Rows with a NaN target or feature are left out. Long format as
    :func:`severity_cv`'s table (feature_set ``name``, metric ``spearman``).
    """
    if len(features) != len(targets):
        raise DataError(f"{len(features)} feature rows but {len(targets)} target rows")
    table = []
    for score in (s for s in SCORES if s in targets):
        columns = _columns(features, [feature], SCORES[score][0])
        x = features[columns].to_numpy(dtype=np.float64).sum(axis=1)
        y = targets[score].to_numpy(dtype=np.float64)
        keep = np.isfinite(x) & np.isfinite(y)
        n = int(keep.sum())
        rho = _spearman(x[keep], y[keep]) if n >= MIN_ROWS else np.nan
        table.append(dict(feature_set=name, score=score, metric="spearman", value=rho, n=n))
    return pd.DataFrame(table, columns=["feature_set", "score", "metric", "value", "n"])


HEADLINE_SCORES = RALO_TOTALS


def _spearman_boot(pred: np.ndarray, true: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Spearman's rho of each patient resample (rows of ``weights``: draws per image)."""
    index = np.arange(len(pred))
    out = np.full(len(weights), np.nan)
    for b, w in enumerate(weights):
        drawn = np.repeat(index, w)
        if len(drawn) >= MIN_ROWS:
            out[b] = _spearman(pred[drawn], true[drawn])
    return out


def regression():
    """The severity regression (unfitted): standardised ridge, its alpha by leave-one-out over
    :data:`RIDGE_ALPHAS`; what :func:`severity_cv`, :func:`transfer_table` and
    :func:`predict_scores` fit."""
    return make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS))


def _fitted(fit_features: pd.DataFrame, fit_targets: pd.DataFrame, names, score: str):
    """The regression of ``score`` on feature ``names`` fitted on the usable rows of ``fit_*``
    (finite target and features); None with fewer than MIN_ROWS of them."""
    x = _matrix(fit_features, list(names), SCORES[score][0])
    y = fit_targets[score].to_numpy(dtype=np.float64)
    keep = np.isfinite(y) & np.isfinite(x).all(axis=1)
    return regression().fit(x[keep], y[keep]) if keep.sum() >= MIN_ROWS else None


def predict_scores(
    fit_features: pd.DataFrame,
    fit_targets: pd.DataFrame,
    features: pd.DataFrame,
    names: list[str],
    scores: list[str],
) -> pd.DataFrame:
    """Each RALO score of ``scores`` predicted for ``features`` by the regression on feature
    ``names`` fitted on ``fit_*`` (usable rows), clipped to the score's range; NaN where a
    score has fewer than MIN_ROWS usable fitting rows or a row's features are not finite."""
    out = pd.DataFrame(index=range(len(features)))
    for score in scores:
        sides, top = SCORES[score]
        x = _matrix(features, names, sides)
        pred = np.full(len(features), np.nan)
        ok = np.isfinite(x).all(axis=1)
        model = _fitted(fit_features, fit_targets, names, score) if ok.any() else None
        if model is not None:
            pred[ok] = np.clip(model.predict(x[ok]), 0.0, top)
        out[score] = pred
    return out


def transfer_table(
    fit_features: pd.DataFrame,
    fit_targets: pd.DataFrame,
    eval_features: pd.DataFrame,
    eval_targets: pd.DataFrame,
    eval_groups: np.ndarray,
    feature_sets: dict[str, list[str]],
    n_boot: int = 0,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fit each feature set's regression on one split, score it on another.

    The regression (standardised ridge, as :func:`severity_cv`) of each RALO score is fitted
    on all usable rows of ``fit_*`` (the calibration images) and predicts the ``eval_*`` rows
    (the test images), clipped to the score's range: a choice made on calibration, reported
    once on test. Spearman's rho and the MAE of the predictions; for the total scores
    (:data:`HEADLINE_SCORES`) with patient-bootstrap 95% intervals over ``eval_groups``
    (``n_boot`` resamples). Returns (table: feature_set, score, metric, value, ci_low,
    ci_high, n; predictions: row, score, feature_set, true, predicted).
    """
    if len(eval_features) != len(eval_targets) or len(eval_groups) != len(eval_features):
        raise DataError("eval features, targets and groups differ in length")
    rows = (
        eval_features["row"].to_numpy() if "row" in eval_features else np.arange(len(eval_features))
    )
    groups = np.asarray(eval_groups).astype(str)
    table, predictions = [], []
    for set_name, names in feature_sets.items():
        for score in (s for s in SCORES if s in eval_targets and s in fit_targets):
            sides, top = SCORES[score]
            x = _matrix(eval_features, list(names), sides)
            y = eval_targets[score].to_numpy(dtype=np.float64)
            keep = np.isfinite(y) & np.isfinite(x).all(axis=1)
            n = int(keep.sum())
            values = {"spearman": (np.nan, np.nan, np.nan), "mae": (np.nan, np.nan, np.nan)}
            model = _fitted(fit_features, fit_targets, names, score) if n >= MIN_ROWS else None
            if model is not None:
                pred = np.clip(model.predict(x[keep]), 0.0, top)
                true = y[keep]
                ci_rho = ci_mae = (np.nan, np.nan)
                if n_boot and score in HEADLINE_SCORES:
                    weights = bootstrap.resample_weights(groups[keep], np.ones(n), n_boot, seed)
                    ci_rho = bootstrap.interval(_spearman_boot(pred, true, weights))
                    ci_mae = bootstrap.interval(bootstrap.weighted_mean(np.abs(pred - true),
                                                                        weights))  # fmt: skip
                values = {
                    "spearman": (_spearman(pred, true), *ci_rho),
                    "mae": (float(mean_absolute_error(true, pred)), *ci_mae),
                }
                predictions.append(
                    pd.DataFrame({"row": rows[keep], "score": score, "feature_set": set_name,
                                  "true": true, "predicted": pred})
                )  # fmt: skip
            else:
                log.warning("%s / %s: too few usable rows, no fit", set_name, score)
            for metric, (value, low, high) in values.items():
                table.append(dict(feature_set=set_name, score=score, metric=metric,
                                  value=value, ci_low=low, ci_high=high, n=n))  # fmt: skip
    columns = ["row", "score", "feature_set", "true", "predicted"]
    preds = (
        pd.concat(predictions, ignore_index=True) if predictions else pd.DataFrame(columns=columns)
    )
    return pd.DataFrame(table), preds
