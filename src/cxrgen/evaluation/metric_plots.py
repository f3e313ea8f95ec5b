"""The evaluation's metric plots: ROC / PR curves, AUROC against guidance scale, severity.

* :func:`roc_pr_curves`: ROC and precision-recall curves of one detection statistic;
* :func:`auroc_vs_scale`: detection AUROC against the guidance scale, with the references;
* :func:`severity_scatter`: predicted against true RALO severity.

They share the style and the atomic PNG writing of :mod:`cxrgen.evaluation.paper_figures`, which
holds the image figures (Fig. 3, Fig. 4, Grad-CAM).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from cxrgen.config import check
from cxrgen.data.classes import HEALTHY_CLASS, POSITIVE_CLASS
from cxrgen.errors import DataError
from cxrgen.evaluation.detection import CLASSIFIER_METHOD, MEASURED, NAKAO_METHOD
from cxrgen.evaluation.paper_figures import SCALE_MEANING, png_figure, setting_name
from cxrgen.evaluation.severity import SCORES as SEVERITY_SCORES

log = logging.getLogger(__name__)


def roc_pr_curves(
    path: str | Path,
    scores: pd.DataFrame,
    statistic: str,
    positive_class: str = POSITIVE_CLASS,
    negative_class: str = HEALTHY_CLASS,
) -> None:
    """ROC and precision-recall curves of ``statistic`` as a score of ``positive_class``.

    ``scores``: scores.parquet tables concatenated (method, scale, class_name, statistic).
    One curve per (method, scale) with its AUROC / AP (scikit-learn) in the legend; a
    setting with a non-finite value of the statistic is left out (as in the detection table).
    Chance: the diagonal, and the positive fraction for precision.
    """
    missing = [c for c in ("method", "scale", "class_name", statistic) if c not in scores]
    if missing:
        raise DataError(f"scores table lacks columns {missing}")
    rows = scores[scores["class_name"].isin((positive_class, negative_class))]
    curves = []
    for (method, scale), group in rows.groupby(["method", "scale"], sort=True, dropna=False):
        y = (group["class_name"] == positive_class).to_numpy(dtype=np.int64)
        values = group[statistic].to_numpy(dtype=np.float64)
        if not np.isfinite(values).all() or y.min() == y.max():
            log.debug("%s %s: %s not plotted (non-finite or one class)", method, scale, statistic)
            continue
        curves.append((setting_name(method, scale), y, values))
    if not curves:
        raise DataError(f"no setting has finite {statistic!r} for both classes")
    with png_figure(path, (10.5, 4.6)) as fig:
        n_pos = int(curves[0][1].sum())
        n_neg = len(curves[0][1]) - n_pos
        fig.suptitle(
            f"Detection of {positive_class} (n = {n_pos}) vs {negative_class} (n = {n_neg}) "
            f"by {statistic}"
        )
        roc_ax, pr_ax = fig.subplots(1, 2)
        prevalences = set()
        for k, (name, y, values) in enumerate(curves):
            color = f"C{k % 10}"
            fpr, tpr, _ = roc_curve(y, values)
            roc_ax.plot(fpr, tpr, color=color, lw=1.4,
                        label=f"{name} (AUROC {roc_auc_score(y, values):.3f})")  # fmt: skip
            precision, recall, _ = precision_recall_curve(y, values)
            pr_ax.plot(recall, precision, color=color, lw=1.4, drawstyle="steps-post",
                       label=f"{name} (AP {average_precision_score(y, values):.3f})")  # fmt: skip
            prevalences.add(round(float(y.mean()), 6))
        roc_ax.plot([0, 1], [0, 1], color="0.5", lw=0.8, ls="--", label="chance (AUROC 0.5)")
        for p in sorted(prevalences):
            pr_ax.axhline(p, color="0.5", lw=0.8, ls="--", label=f"chance (AP {p:.3f})")
        roc_ax.set_xlabel("false positive rate (1 - specificity)")
        roc_ax.set_ylabel("true positive rate (sensitivity)")
        roc_ax.set_title("ROC curve")
        pr_ax.set_xlabel("recall (sensitivity)")
        pr_ax.set_ylabel("precision (positive predictive value)")
        pr_ax.set_title("precision-recall curve")
        for ax in (roc_ax, pr_ax):
            ax.set_xlim(-0.02, 1.02)
            ax.set_ylim(-0.02, 1.02)
            ax.set_aspect("equal")
            ax.grid(alpha=0.3, lw=0.4)
            ax.legend(frameon=False, loc="lower right" if ax is roc_ax else "lower left")


def auroc_vs_scale(
    path: str | Path, detection: pd.DataFrame, statistics: Sequence[str] | None = None
) -> None:
    """Detection AUROC (95% bootstrap interval) against the scale, one panel per method.

    ``detection``: detection.parquet. One line per statistic (``statistics``; default every
    measured one) in each method's panel; the guidance classifier's AUROC (with its interval
    as a band) and the published alpha-GAN AUROC as horizontal lines in every panel.
    """
    missing = [
        c
        for c in ("method", "scale", "statistic", "metric", "value", "ci_low", "ci_high")
        if c not in detection
    ]
    if missing:
        raise DataError(f"detection table lacks columns {missing}")
    auroc = detection[detection["metric"] == "auroc"]
    source = auroc["source"] if "source" in auroc else pd.Series(MEASURED, index=auroc.index)
    reference = auroc["method"].isin((CLASSIFIER_METHOD, NAKAO_METHOD))
    measured = auroc[(source == MEASURED) & ~reference]
    if statistics is not None:
        measured = measured[measured["statistic"].isin(list(statistics))]
    if measured.empty:
        raise DataError("no measured AUROC rows to plot")
    stats = list(dict.fromkeys(measured["statistic"] if statistics is None else statistics))
    stats = [s for s in stats if s in set(measured["statistic"])]
    style = {s: (f"C{k % 10}", "osD^v<>ph*"[k % 10]) for k, s in enumerate(stats)}
    references = auroc[auroc["method"] == CLASSIFIER_METHOD].head(1)
    published = auroc[(auroc["method"] == NAKAO_METHOD) | (source != MEASURED)]
    published = published[published["method"] != CLASSIFIER_METHOD].drop_duplicates("method")
    methods = sorted(measured["method"].unique())
    with png_figure(path, (3.9 * len(methods) + 2.6, 4.4)) as fig:
        fig.suptitle("Detection AUROC against guidance scale (95% bootstrap intervals)")
        axes = fig.subplots(1, len(methods), sharey=True, squeeze=False)[0]
        for ax, method in zip(axes, methods, strict=True):
            rows = measured[measured["method"] == method]
            scales = np.sort(rows["scale"].unique().astype(np.float64))
            log_x = scales.min() > 0 and scales.max() / scales.min() >= 10
            span = np.log10(scales.max() / scales.min()) if log_x else np.ptp(scales)
            step = 0.03 * (span if span > 0 else 1.0)  # the axis spans ~span (or 1, see xlim)
            for k, statistic in enumerate(stats):
                part = rows[rows["statistic"] == statistic].sort_values("scale")
                if part.empty:
                    continue
                offset = (k - (len(stats) - 1) / 2) * step  # dodge: error bars side by side
                x = part["scale"].to_numpy(dtype=np.float64)
                x = x * 10**offset if log_x else x + offset
                value = part["value"].to_numpy(dtype=np.float64)
                err = np.nan_to_num(
                    np.clip(
                        [
                            value - part["ci_low"].to_numpy(float),
                            part["ci_high"].to_numpy(float) - value,
                        ],
                        0,
                        None,
                    )
                )
                color, marker = style[statistic]
                ax.errorbar(x, value, yerr=err, color=color, marker=marker, ms=4, lw=1.2,
                            capsize=2, label=statistic)  # fmt: skip
            for _, ref in references.iterrows():
                ax.axhline(
                    ref["value"],
                    color="black",
                    lw=1.2,
                    label="guidance classifier p(opacity), t = 0",
                )
                if np.isfinite(ref["ci_low"]) and np.isfinite(ref["ci_high"]):
                    ax.axhspan(ref["ci_low"], ref["ci_high"], color="black", alpha=0.08, lw=0,
                               label="classifier 95% interval")  # fmt: skip
            for _, ref in published.iterrows():
                ax.axhline(ref["value"], color="tab:red", lw=1.2, ls="--",
                           label=f"{ref['method']}, published")  # fmt: skip
            ax.axhline(0.5, color="0.5", lw=0.8, ls=":", label="chance")
            if log_x:
                ax.set_xscale("log")
            ax.set_xticks(scales, [f"{s:g}" for s in scales])
            ax.minorticks_off()
            if len(scales) == 1:
                ax.set_xlim(scales[0] - 0.5, scales[0] + 0.5)
            ax.set_xlabel(SCALE_MEANING.get(method, "scale"))
            ax.set_title(method)
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3, lw=0.4)
        axes[0].set_ylabel("AUROC")
        handles, labels = axes[0].get_legend_handles_labels()
        for ax in axes[1:]:
            for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
                if lab not in labels:
                    handles.append(h)
                    labels.append(lab)
        fig.legend(handles, labels, loc="outside right center", frameon=False)


# --- severity ------------------------------------------------------------------------------


def severity_scatter(
    path: str | Path,
    predictions: pd.DataFrame,
    severity: pd.DataFrame,
    scores: Sequence[str] = ("extent_total", "opacity_total"),
    seed: int = 0,
) -> None:
    """Predicted against true RALO score, per score: the anomaly-map reading (the highest
    Spearman of the rows given that are not the classifier's; pass the calibration-chosen one
    alone) and the classifier baseline (method 'classifier').

    ``predictions`` / ``severity``: severity_predictions.parquet / severity.parquet. The
    integer truth is jittered by up to +-0.15 (seeded by ``seed``) so equal scores do not
    hide each other; the dashed line is predicted = true. A data set without RALO scores gets
    a figure that says so.
    """
    scores = list(scores)
    check(len(scores) >= 1, "severity_scatter needs at least one score")
    rho = severity[severity["metric"] == "spearman"] if "metric" in severity else severity
    mae = severity[severity["metric"] == "mae"] if "metric" in severity else severity
    width = 2 * 4.3 + 0.4
    if predictions.empty or severity.empty:
        with png_figure(path, (width, 2.5)) as fig:
            fig.suptitle("Severity (RALO) predicted from the anomaly maps")
            ax = fig.subplots()
            ax.text(0.5, 0.5, "no RALO severity scores in this data set", ha="center",
                    va="center", transform=ax.transAxes)  # fmt: skip
            ax.set_axis_off()
        return
    rng = np.random.default_rng(seed)
    with png_figure(path, (width, 4.1 * len(scores) + 0.5)) as fig:
        fig.suptitle("Severity (RALO) on the test split, regression fitted on calibration")
        axes = fig.subplots(len(scores), 2, squeeze=False)
        for r, score in enumerate(scores):
            top = SEVERITY_SCORES.get(score, (None, 8.0))[1]
            per = rho[rho["score"] == score]
            maps = per[per["method"] != "classifier"]
            finite = maps[np.isfinite(maps["value"].to_numpy(dtype=np.float64))]
            best = (finite if not finite.empty else maps).sort_values(
                ["value", "method", "scale"], ascending=[False, True, True], kind="mergesort"
            )
            panels = []
            if not best.empty:
                b = best.iloc[0]
                name = f"{setting_name(b['method'], b['scale'])}, {b['feature_set']}"
                panels.append((b["feature_set"], b["method"], b["scale"], name))
            else:
                panels.append(("anomaly map", None, None, "anomaly map"))
            panels.append(("classifier probability", None, None, "classifier p(opacity)"))
            for c, (feature_set, method, scale, name) in enumerate(panels):
                ax = axes[r, c]
                sel = predictions[(predictions["score"] == score)
                                  & (predictions["feature_set"] == feature_set)]  # fmt: skip
                stats_rho = per[per["feature_set"] == feature_set]
                stats_mae = mae[(mae["score"] == score) & (mae["feature_set"] == feature_set)]
                if method is not None:
                    sel = sel[(sel["method"] == method) & np.isclose(sel["scale"], scale)]
                    stats_rho = stats_rho[(stats_rho["method"] == method)
                                          & np.isclose(stats_rho["scale"], scale)]  # fmt: skip
                    stats_mae = stats_mae[(stats_mae["method"] == method)
                                          & np.isclose(stats_mae["scale"], scale)]  # fmt: skip
                ax.plot([0, top], [0, top], color="0.5", lw=0.8, ls="--", label="predicted = true")
                ax.set_xlim(-0.5, top + 0.5)
                ax.set_ylim(-0.5, top + 0.5)
                ax.set_aspect("equal")
                ax.grid(alpha=0.3, lw=0.4)
                ax.set_xlabel(f"true {score} (RALO points, jittered)")
                ax.set_ylabel(f"predicted {score} (RALO points)")
                if sel.empty:
                    ax.set_title(f"{score}: {name}")
                    ax.text(0.5, 0.5, "no predictions", ha="center", transform=ax.transAxes)
                    continue
                true = sel["true"].to_numpy(dtype=np.float64)
                jitter = rng.uniform(-0.15, 0.15, len(true))
                ax.scatter(true + jitter, sel["predicted"], s=14, alpha=0.7,
                           color="C0" if c == 0 else "C1", edgecolors="none")  # fmt: skip
                value = stats_rho["value"].iloc[0] if len(stats_rho) else np.nan
                error = stats_mae["value"].iloc[0] if len(stats_mae) else np.nan
                ax.set_title(
                    f"{score}: {name}\nSpearman rho = {value:.2f}, MAE = {error:.2f}, "
                    f"n = {len(sel)}"
                )
                ax.legend(frameon=False, loc="upper left")


# --- Grad-CAM ------------------------------------------------------------------------------
