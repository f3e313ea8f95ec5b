"""Stage ``evaluation_figures``: the figures of the counterfactual evaluation, for people.

``write_figures(latents_dir, counterfactual_dirs, store_dir, metrics_dir, out_dir, cfg)``
draws, from the inversion, every counterfactual folder and the tables of the evaluate stage:

* ``fig3.png``: the paper's Fig. 3, original / latent / counterfactual / anomaly map of each
  method at its best scale, on images chosen reproducibly (most and least changed opacity
  images, a median Normal image);
* ``fig4.png``: the paper's Fig. 4, high- and low-pass filtered original vs counterfactual
  of the most changed image, beside the radially averaged power spectra;
* ``roc_pr.png``: ROC and precision-recall curves of every setting for the best statistic;
* ``auroc_vs_scale.png``: detection AUROC against the guidance scale per method;
* ``severity.png``: predicted against true RALO scores (a note when there are none);
* ``gradcam.png``: Grad-CAM of the guidance classifier on real images and on the
  counterfactuals of each method (the second paper's Fig. 1; a note without a classifier).

Every figure shows the test split; "best" is the setting chosen on the calibration split
(highest calibration AUROC of ``detection.parquet``, any statistic; for the severity panel,
the highest calibration Spearman among opacity images), never a test maximum.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cxrgen import io
from cxrgen.config import check
from cxrgen.data.classes import POSITIVE_CLASS
from cxrgen.data.latents import LATENTS, inverted_set, open_array
from cxrgen.data.store import IMAGES, LESION_MASKS, store_view
from cxrgen.devices import check_device_name, resolve_device
from cxrgen.errors import DataError
from cxrgen.evaluation import metric_plots, paper_figures
from cxrgen.evaluation.detection import best_setting
from cxrgen.evaluation.evaluation_summary import chosen_severity as chosen_reading
from cxrgen.evaluation.inputs import Setting, load_settings

log = logging.getLogger(__name__)

FIGURES = ("fig3", "fig4", "roc_pr", "auroc_vs_scale", "severity", "gradcam")


@dataclass(frozen=True)
class FiguresConfig:
    """positive_class: the opacity class. rows_per_group: images of each extreme in Fig. 3.
    cutoff: Fig. 4's high/low-pass cut-off (fraction of Nyquist). device: the Grad-CAM pass."""

    positive_class: str = POSITIVE_CLASS
    rows_per_group: int = 3
    cutoff: float = 0.25
    device: str = "auto"

    def __post_init__(self):
        check(self.rows_per_group >= 1, "rows_per_group must be >= 1")
        check(0 < self.cutoff < 1.5, "cutoff must be a fraction of Nyquist in (0, 1.5)")
        check_device_name(self.device)


def best_per_method(
    settings: list[Setting], detection: pd.DataFrame, split: str = "calibration"
) -> list[Setting]:
    """For each method, its scale with the highest AUROC of any statistic on ``split`` (else
    the first)."""
    auroc = detection[(detection["metric"] == "auroc") & (detection["source"] == "measured")]
    if "split" in auroc:
        auroc = auroc[auroc["split"] == split]
    chosen = []
    for method in sorted({s.method for s in settings}):
        own = [s for s in settings if s.method == method]
        rows = auroc[auroc["method"] == method].dropna(subset=["value"])
        if rows.empty:
            chosen.append(own[0])
            continue
        top = rows.sort_values(["value", "scale"], ascending=[False, True]).iloc[0]
        chosen.append(next(s for s in own if s.scale == top["scale"]))
    return chosen


def write_figures(
    latents_dir: str | Path,
    counterfactual_dirs: list[str | Path],
    store_dir: str | Path,
    metrics_dir: str | Path,
    out_dir: str | Path,
    cfg: FiguresConfig,
    classifier_dir: str | Path | None = None,
) -> list[Path]:
    """Write the figures of the module docstring to ``out_dir``; return their paths."""
    latents_dir, metrics_dir, out_dir = Path(latents_dir), Path(metrics_dir), Path(out_dir)
    images, _, _ = inverted_set(latents_dir, Path(store_dir))
    settings = load_settings([Path(d) for d in counterfactual_dirs], images)
    tables = {
        name: pd.read_parquet(metrics_dir / f"{name}.parquet")
        for name in ("detection", "severity", "severity_predictions", "spectra_curves")
    }
    original = images.view(IMAGES)
    latents = open_array(latents_dir, LATENTS)
    cal, test = evaluated_splits(metrics_dir)
    best = best_setting(tables["detection"], split=cal)
    top = next(s for s in settings if (s.method, s.scale) == (best["method"], best["scale"]))
    shown = best_per_method(settings, tables["detection"], cal)
    names = {id(s): paper_figures.setting_name(s.method, s.scale) for s in settings}

    test_scores = top.scores[top.scores["split"] == test]
    rows = paper_figures.choose_rows(test_scores, cfg.positive_class, cfg.rows_per_group)
    labels = paper_figures.row_labels(test_scores, rows, setting=names[id(top)])
    paper_figures.fig3_grid(
        out_dir / "fig3.png", original, latents,
        {names[id(s)]: s.array("counterfactuals") for s in shown},
        {names[id(s)]: s.array("absdiff") for s in shown}, rows, labels,
        lesion_masks=store_view(images, LESION_MASKS),
    )  # fmt: skip
    first = np.array(rows[:1])
    paper_figures.fig4_spectra(
        out_dir / "fig4.png", original[first][0], top.array("counterfactuals")[first][0],
        cfg.cutoff, tables["spectra_curves"], setting_label=names[id(top)],
    )  # fmt: skip
    scores = pd.concat([s.scores for s in settings], ignore_index=True)
    negative = next(c for c in images.classes if c != cfg.positive_class)
    metric_plots.roc_pr_curves(
        out_dir / "roc_pr.png", scores[scores["split"] == test], best["statistic"],
        cfg.positive_class, negative,
    )  # fmt: skip
    det = tables["detection"]
    metric_plots.auroc_vs_scale(
        out_dir / "auroc_vs_scale.png", det[det["split"].isin([test, "published"])]
    )
    metric_plots.severity_scatter(
        out_dir / "severity.png", *chosen_severity(tables["severity"],
                                                   tables["severity_predictions"], cal, test),
    )  # fmt: skip
    gradcam(out_dir / "gradcam.png", classifier_dir, original, shown, names, rows, images, cfg)
    return [out_dir / f"{name}.png" for name in FIGURES]


def evaluated_splits(metrics_dir: Path) -> tuple[str, str]:
    """The calibration and test split names the evaluate stage used (its provenance)."""
    path = metrics_dir / "provenance.json"
    if not path.exists():
        raise DataError(f"no evaluation in {metrics_dir} (missing provenance.json): run evaluate")
    config = io.read_json(path).get("config") or {}
    return config.get("calibration_split", "calibration"), config.get("test_split", "test")


def chosen_severity(
    severity: pd.DataFrame, predictions: pd.DataFrame, cal: str, test: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Test predictions and rows (opacity images) of the reading chosen on calibration per
    score, and of the classifier baseline."""
    subset = "opacity images"
    if severity.empty:
        return predictions, severity
    rho = severity[(severity["metric"] == "spearman") & (severity["subset"] == subset)]
    keep_sev, keep_pred = [], []
    for score, per in rho[rho["split"] == cal].groupby("score"):
        picks = [per[per["method"] == "classifier"]]
        best = chosen_reading(severity, cal, score)
        if best is not None:
            picks.append(best.to_frame().T)
        for pick in picks:
            for _, r in pick.iterrows():
                same = (severity["score"] == score) & (severity["feature_set"] == r["feature_set"])
                same &= (severity["method"] == r["method"]) & (severity["split"] == test)
                same &= severity["subset"] == subset
                if r["method"] != "classifier":
                    same &= np.isclose(severity["scale"], r["scale"])
                keep_sev.append(severity[same])
                hit = (predictions["score"] == score) & (predictions["method"] == r["method"])
                hit &= predictions["feature_set"] == r["feature_set"]
                hit &= predictions["subset"] == subset
                if r["method"] != "classifier":
                    hit &= np.isclose(predictions["scale"], r["scale"])
                keep_pred.append(predictions[hit])
    return (pd.concat(keep_pred, ignore_index=True) if keep_pred else predictions.iloc[:0],
            pd.concat(keep_sev, ignore_index=True) if keep_sev else severity.iloc[:0])  # fmt: skip


def gradcam(path, classifier_dir, original, shown, names, rows, images, cfg) -> None:
    """Grad-CAM of p(positive) on the chosen real images and their counterfactuals."""
    from cxrgen.evaluation.gradcam import grad_cam

    rows = np.asarray(rows)
    real = original[rows]
    stack = [real] + [np.asarray(s.array("counterfactuals")[rows]) for s in shown]
    row_names = ["real"] + [f"{names[id(s)]} counterfactual" for s in shown]
    titles = [f"{images.table['class_name'].iloc[r]} (row {r})" for r in rows] * len(stack)
    if classifier_dir is None:
        cams = np.zeros((len(stack), *real.shape))
        title = "Grad-CAM: no guidance classifier for this data set (maps left empty)"
    else:
        from cxrgen.classifier.model import load_classifier

        model = load_classifier(classifier_dir, resolve_device(cfg.device))
        target = images.classes.index(cfg.positive_class)
        cams = np.stack([grad_cam(model, x, target) for x in stack])
        title = f"Grad-CAM of p({cfg.positive_class} | x, t = 0), noise-aware classifier"
    paper_figures.gradcam_panel(
        path, np.stack(stack), titles, cams, row_labels=row_names, title=title
    )
