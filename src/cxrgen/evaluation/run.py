"""Stage ``evaluate``: every metric of the counterfactuals of one data set, one tidy table each.

``evaluate(latents_dir, counterfactual_dirs, store_dir, out_dir, cfg, classifier_dir)`` reads
the inversion, the counterfactual folders of every method and scale, and the tensor store,
and writes to ``out_dir`` (each table has ``method`` and ``scale`` columns where they apply):

* ``table2.parquet``: the paper's Table 2 (mean per-image sum of |difference| per class);
* ``detection.parquet``: image-level AUROC / AP with bootstrap 95% intervals per method,
  scale and statistic, beside the guidance classifier's own probability at t = 0 and the
  published unsupervised result on RSNA;
* ``localisation.parquet``: against the bounding boxes (pixel AUROC, pointing game, Dice),
  per anomaly map of ``cfg.pixel_maps`` (column ``map``);
* ``ground_truth.parquet``: against the phantoms' exact lesion masks (per anomaly map) and
  healthy images (the counterfactual errors do not depend on a map: ``map`` is "");
* ``severity.parquet`` + ``severity_predictions.parquet``: cross-validated RALO regression,
  and the fit-free rank correlation of the removed intensity per lung;
* ``spectra.parquet`` (band energies) + ``spectra_curves.parquet`` (radial power spectra);
* ``inversion.parquet``: reconstruction fidelity of the inversion;
* ``classifier.parquet``: the classifier's p(positive) per image (t = 0);
* ``summary.parquet`` + ``summary.md``: the headline numbers; ``provenance.json``;
* ``summary.html``, ``detection.html``, ``table2.html``: those tables for the report.

A table whose inputs the data set lacks (boxes, ground truth, RALO scores, a classifier) is
written empty with its columns, so the outputs are the same for every data set.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cxrgen import io, provenance
from cxrgen.config import check
from cxrgen.counterfactual.invert import ImageSet, inverted_set
from cxrgen.devices import check_device_name, resolve_device
from cxrgen.evaluation import detection, ground_truth, localisation, severity, spectra
from cxrgen.evaluation.inputs import (
    PIXEL_MAPS,
    Setting,
    load_settings,
    pixel_map_views,
    store_view,
)
from cxrgen.evaluation.summary import summary_table, write_summary_markdown
from cxrgen.html_tables import write_html_table

log = logging.getLogger(__name__)

STATISTICS = (
    "sum_abs",
    "top_mean_abs",
    "sum_removed",
    "hpf_energy",
    "guided_sum_abs",
    "lung_sum_abs",
)


@dataclass(frozen=True)
class EvaluateConfig:
    """What to measure and how.

    positive_class / negative_class: the detection task (others are ignored). statistics:
    per-image scores (columns of scores.parquet) compared for detection. n_boot: bootstrap
    resamples of the 95% intervals. seed: bootstrap, subsampling and folds. severity_folds:
    patient-grouped cross-validation folds. top_fraction: the per-lung top-mean feature.
    spectra_cutoffs: band edges as fractions of Nyquist. max_pixels: pixels pooled for a
    pixel AUROC (a seeded subsample above it). map_smoothing: the Gaussian sigma, as a fraction
    of the image width, that smooths the anomaly maps before the pixel-level (localisation and
    ground-truth) metrics (0 = raw maps; the image-level statistics use the raw maps).
    pixel_maps: the anomaly maps of the pixel-level metrics, any of :data:`PIXEL_MAPS`
    ('abs' = |original - counterfactual|, 'removed' = max(original - counterfactual, 0)).
    batch_size / device: the classifier pass.
    """

    positive_class: str = "Lung Opacity"
    negative_class: str = "Normal"
    statistics: tuple[str, ...] = STATISTICS
    n_boot: int = 1000
    seed: int = 0
    severity_folds: int = 5
    top_fraction: float = 0.01
    spectra_cutoffs: tuple[float, ...] = (0.1, 0.25, 0.5)
    max_pixels: int = 2_000_000
    map_smoothing: float = 0.03
    pixel_maps: tuple[str, ...] = tuple(PIXEL_MAPS)
    batch_size: int = 64
    device: str = "auto"

    def __post_init__(self):
        check(len(self.statistics) >= 1, "statistics needs at least one score column")
        check(self.n_boot >= 10, f"n_boot must be >= 10, got {self.n_boot}")
        check(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        check(self.severity_folds >= 2, "severity_folds must be >= 2")
        check(0 < self.top_fraction <= 1, "top_fraction must be in (0, 1]")
        cut = list(self.spectra_cutoffs)
        check(
            len(cut) >= 1 and cut == sorted(set(cut)) and cut[0] > 0,
            f"spectra_cutoffs must be increasing positive fractions of Nyquist, got {cut}",
        )
        check(self.max_pixels >= 1000, "max_pixels must be >= 1000")
        check(0 <= self.map_smoothing < 0.5, "map_smoothing must be in [0, 0.5)")
        unknown = sorted(set(self.pixel_maps) - set(PIXEL_MAPS))
        check(
            len(self.pixel_maps) >= 1 and not unknown,
            f"pixel_maps must be some of {list(PIXEL_MAPS)}, got {list(self.pixel_maps)}",
        )
        check(self.batch_size >= 1, "batch_size must be >= 1")
        check_device_name(self.device)


def tagged(table: pd.DataFrame, setting: Setting, pixel_map: str | None = None) -> pd.DataFrame:
    """``table`` with the setting's method and scale (and the anomaly map) as first columns."""
    table = table.copy()
    table.insert(0, "method", setting.method)
    table.insert(1, "scale", setting.scale)
    if pixel_map is not None:
        table.insert(2, "map", pixel_map)
    return table


def classifier_table(classifier_dir: Path | None, images: ImageSet, cfg: EvaluateConfig):
    """p(positive | x, t = 0) of every image from the guidance classifier (None: no classifier)."""
    if classifier_dir is None:
        return None
    from cxrgen.classifier.model import load_classifier

    model = load_classifier(classifier_dir, resolve_device(cfg.device))
    positive = images.classes.index(cfg.positive_class)
    probs = detection.classifier_probabilities(
        model, store_view(images, "images"), cfg.batch_size, positive_label=positive
    )
    table = images.table[["row", "image_id", "patient_id", "class_name"]].copy()
    table["p_positive"] = probs
    return table


def per_image(index: pd.DataFrame, images: ImageSet, columns) -> pd.DataFrame:
    """Columns of the store's index (``row`` as its index) in the order of the images."""
    present = [c for c in columns if c in index.columns]
    return index.loc[images.table["store_row"], present].reset_index(drop=True)


def evaluate(
    latents_dir: str | Path,
    counterfactual_dirs: list[str | Path],
    store_dir: str | Path,
    out_dir: str | Path,
    cfg: EvaluateConfig,
    classifier_dir: str | Path | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Write every table of the module docstring; return the summary table."""
    latents_dir, store_dir, out_dir = Path(latents_dir), Path(store_dir), Path(out_dir)
    check(len(counterfactual_dirs) >= 1, "evaluate needs at least one counterfactual folder")
    images, _, meta = inverted_set(latents_dir, store_dir)
    for name in (cfg.positive_class, cfg.negative_class):
        check(name in images.classes, f"class {name!r} is not one of {list(images.classes)}")
    settings = load_settings([Path(d) for d in counterfactual_dirs], images)
    original = store_view(images, "images")
    positive = (images.table["class_name"] == cfg.positive_class).to_numpy()
    n_pixels = int(np.prod(original.shape[1:]))
    tables: dict[str, pd.DataFrame] = {}

    scores = pd.concat([s.scores for s in settings], ignore_index=True)
    tables["table2"] = detection.table2(scores, meta["split"], n_pixels=n_pixels)
    statistics = [s for s in cfg.statistics if s in scores.columns]
    measured = detection.detection_table(
        scores, statistics, cfg.positive_class, cfg.negative_class, cfg.n_boot, cfg.seed
    )
    probs = classifier_table(None if classifier_dir is None else Path(classifier_dir), images, cfg)
    reference = detection.reference_rows(
        probs, cfg.positive_class, cfg.negative_class, cfg.n_boot, cfg.seed
    )
    tables["detection"] = pd.concat([measured, reference], ignore_index=True)
    tables["classifier"] = probs if probs is not None else pd.DataFrame(
        columns=["row", "image_id", "patient_id", "class_name", "p_positive"]
    )  # fmt: skip

    index = pd.read_parquet(store_dir / "index.parquet").set_index("row")
    boxes = per_image(index, images, ["boxes"])["boxes"].tolist() if "boxes" in index else None
    healthy, lesions = store_view(images, "healthy"), store_view(images, "lesion_masks")
    lungs = store_view(images, "lung_masks")
    targets = per_image(index, images, severity.SCORES)
    labels = images.table["class_name"].to_numpy()
    has_targets = not targets.empty and targets.notna().any().any()
    groups = images.table["patient_id"].to_numpy()

    with_truth = healthy is not None and lesions is not None
    with_lesion = ground_truth.lesion_rows(lesions) if with_truth else None
    parts: dict[str, list[pd.DataFrame]] = {
        k: [] for k in ("localisation", "ground_truth", "severity", "severity_predictions",
                        "spectra", "spectra_curves")
    }  # fmt: skip
    bar = tqdm(settings, desc="evaluate", unit="setting", disable=not progress)
    for setting in bar:
        bar.set_postfix_str(f"{setting.method} {setting.scale:g}")
        absdiff, diff = setting.array("absdiff"), setting.array("diff")
        cf = setting.array("counterfactuals")
        views = pixel_map_views(setting, cfg.pixel_maps, cfg.map_smoothing * original.shape[-1])
        with_boxes = boxes is not None and any(len(localisation.as_boxes(b)) for b in boxes)
        if with_truth:
            table = ground_truth.counterfactual_errors(original, cf, healthy, lesions, positive)
            parts["ground_truth"].append(tagged(table, setting, ""))
        for name, maps in views.items():
            if with_boxes:
                table = localisation.localisation_table(
                    maps, boxes, max_pixels=cfg.max_pixels, seed=cfg.seed
                )
                parts["localisation"].append(tagged(table, setting, name))
            if with_truth:
                table = ground_truth.lesion_agreement(
                    maps, lesions, max_pixels=cfg.max_pixels, seed=cfg.seed, rows=with_lesion
                )
                parts["ground_truth"].append(tagged(table, setting, name))
        if has_targets:
            features = severity.lung_features(diff, absdiff, lungs, cfg.top_fraction)
            table, predictions = severity.severity_cv(
                features, targets, groups, {"anomaly map": list(severity.FEATURES)},
                cfg.severity_folds, cfg.seed,
            )  # fmt: skip
            parts["severity"].append(tagged(table, setting))
            parts["severity"].append(tagged(severity.rank_table(features, targets), setting))
            parts["severity_predictions"].append(tagged(predictions, setting))
        table = spectra.band_energy_table(original, cf, cfg.spectra_cutoffs, labels=labels)
        parts["spectra"].append(tagged(table, setting))
        parts["spectra_curves"].append(tagged(spectrum_curves(original, cf, diff), setting))
    if has_targets and probs is not None:
        table, predictions = severity.severity_cv(
            probs[["p_positive"]], targets, groups,
            {"classifier probability": ["p_positive"]}, cfg.severity_folds, cfg.seed,
        )  # fmt: skip
        baseline = Setting("classifier", np.nan, latents_dir, pd.DataFrame())
        parts["severity"].append(tagged(table, baseline))
        ranks = severity.rank_table(probs, targets, "p_positive", "classifier probability, no fit")
        parts["severity"].append(tagged(ranks, baseline))
        parts["severity_predictions"].append(tagged(predictions, baseline))
    for name, frames in parts.items():
        tables[name] = pd.concat(frames, ignore_index=True) if frames else empty(name)
    tables["inversion"] = inversion_summary(images.table)

    tables["summary"] = summary_table(tables)
    for name, table in tables.items():
        io.write_parquet(out_dir / f"{name}.parquet", table)
    write_summary_markdown(out_dir / "summary.md", tables["summary"], meta)
    for name, (title, caption) in HTML_TABLES.items():
        write_html_table(out_dir / f"{name}.html", tables[name], title, caption)
    provenance.write(
        out_dir / "provenance.json",
        "evaluate",
        cfg,
        latents=str(latents_dir),
        counterfactuals=[str(s.folder) for s in settings],
        store=str(store_dir),
        classifier=None if classifier_dir is None else str(classifier_dir),
    )
    log.info("evaluation of %d settings written to %s", len(settings), out_dir)
    return tables["summary"]


HTML_TABLES = {
    "summary": (
        "Counterfactual evaluation: summary",
        "Headline numbers of the run: the best detection setting and its localisation, the "
        "phantom ground truth, severity regression, inversion fidelity and Table 2.",
    ),
    "detection": (
        "Image-level detection of lung opacity from the difference maps",
        "AUROC and average precision with stratified bootstrap 95% intervals per method, "
        "scale and per-image statistic; reference rows: the guidance classifier at t = 0 "
        "and the published unsupervised alpha-GAN result on RSNA.",
    ),
    "table2": (
        "Table 2: mean per-image sum of the absolute difference",
        "Per method, scale and class, beside the paper's validation-set values (256x256).",
    ),
}

EMPTY_COLUMNS = {
    "localisation": ["method", "scale", "map", "metric", "value", "n_images", "threshold"],
    "ground_truth": ["method", "scale", "map", "metric", "value", "n_images", "subset",
                     "threshold"],
    "severity": ["method", "scale", "feature_set", "score", "metric", "value", "n"],
    "severity_predictions": ["method", "scale", "row", "score", "feature_set", "true",
                             "predicted"],
    "spectra": ["method", "scale", "image_kind", "class_name", "band_low", "band_high",
                "energy", "n"],
    "spectra_curves": ["method", "scale", "image_kind", "frequency", "power"],
}  # fmt: skip


def empty(name: str) -> pd.DataFrame:
    return pd.DataFrame(columns=EMPTY_COLUMNS[name])


def spectrum_curves(original, counterfactual, diff) -> pd.DataFrame:
    """Radially averaged power spectra of the originals, counterfactuals and differences."""
    frames = []
    for kind, images in (("original", original), ("counterfactual", counterfactual),
                         ("difference", diff)):  # fmt: skip
        freqs, power = spectra.radial_power_spectrum(images)
        frames.append(pd.DataFrame({"image_kind": kind, "frequency": freqs, "power": power}))
    return pd.concat(frames, ignore_index=True)


def inversion_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Reconstruction fidelity of the inversion per class and overall."""
    rows = []
    for name, group in [("all", table), *table.groupby("class_name")]:
        rows.append(
            {
                "class_name": name,
                "n": len(group),
                "psnr_median": float(group["recon_psnr"].median()),
                "psnr_min": float(group["recon_psnr"].min()),
                "max_abs_error": float(group["recon_max_abs"].max()),
                "mae_mean": float(group["recon_mae"].mean()),
            }
        )
    return pd.DataFrame(rows)
