"""Stage ``evaluate``: every metric of the counterfactuals of one data set, one tidy table each.

``evaluate(latents_dir, counterfactual_dirs, store_dir, out_dir, cfg, classifier_dir)`` reads
the inversion, the counterfactual folders of every method and scale, and the tensor store,
and writes to ``out_dir`` (each table has ``method``, ``scale`` and ``split`` columns where
they apply, and ``label_informed``):

* ``table2.parquet``: the paper's Table 2 (mean per-image sum of |difference| per class);
* ``detection.parquet``: image-level AUROC / AP with patient-bootstrap 95% intervals per
  method, scale, split and statistic, beside the guidance classifier's own probability at
  t = 0 and the published unsupervised result on RSNA;
* ``localisation.parquet``: against the bounding boxes (pixel AUROC, pointing game, Dice),
  per anomaly map of ``cfg.pixel_maps`` (column ``map``) and smoothing;
* ``ground_truth.parquet``: against the phantoms' exact lesion masks (per anomaly map and
  smoothing) and healthy images (the counterfactual errors do not depend on a map: ``map``
  is "");
* ``severity.parquet`` + ``severity_predictions.parquet``: the RALO readings, cross-validated
  on calibration (the choice) and fitted on calibration to predict test (the result), among
  the opacity images and among all images;
* ``spectra.parquet`` (band energies) + ``spectra_curves.parquet`` (radial power spectra) of
  the test images;
* ``inversion.parquet``: reconstruction fidelity of the inversion;
* ``classifier.parquet``: the classifier's p(positive) per image (t = 0);
* ``summary.parquet`` + ``summary.md``: the headline numbers (:mod:`.summary`);
  ``provenance.json``;
* ``summary.html``, ``detection.html``, ``table2.html``: those tables for the report.

Settings are chosen on the calibration split and reported on the test split: the Dice
threshold of a test row is the one chosen on calibration, a severity regression of a test row
was fitted on calibration, and the summary names the calibration-chosen setting. Intervals
resample patients (:mod:`.bootstrap`). Nothing here feeds a label back into a map or score:
labels, masks and healthy twins are read only to score.

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
from cxrgen.data.classes import HEALTHY_CLASS, POSITIVE_CLASS
from cxrgen.data.latents import inverted_set
from cxrgen.data.store import (
    HEALTHY,
    IMAGES,
    LESION_MASKS,
    ImageSet,
    RowView,
    array_path,
    store_view,
)
from cxrgen.devices import check_device_name, resolve_device
from cxrgen.errors import DataError
from cxrgen.evaluation import detection, ground_truth, severity, spectra
from cxrgen.evaluation.evaluation_summary import summary_table, write_summary_markdown
from cxrgen.evaluation.held_out import design, pixel_tables, severity_tables, tagged
from cxrgen.evaluation.inputs import PIXEL_MAPS, Setting, load_settings
from cxrgen.html_tables import write_html_table

log = logging.getLogger(__name__)

STATISTICS = (
    "sum_abs",
    "top_mean_abs",
    "sum_removed",
    "hpf_energy",
    "guided_sum_abs",
)
# The severity readings compared on the calibration split: regressions of each RALO score on
# features of the difference map per lung (severity.FEATURES; in the predicted lung masks, or
# the image halves without them), or on one number, the intensity removed inside the score's
# lung (both lungs for a total).
SEVERITY_READINGS = {
    "ridge on per-lung features": list(severity.FEATURES),
    "sum_removed per lung": ["+sum_removed"],
}
CLASSIFIER_READING = "classifier probability"


@dataclass(frozen=True)
class EvaluateConfig:
    """What to measure and how.

    positive_class / negative_class: the detection task (others are ignored).
    calibration_split / test_split: the inverted splits on which every setting is chosen
    (method, scale, statistic, map, smoothing, Dice threshold, severity reading and its
    regression) and on which the chosen setting is reported, once. statistics: per-image
    scores (columns of scores.parquet) compared for detection. n_boot: patient-level
    bootstrap resamples of the 95% intervals. seed: bootstrap, subsampling and folds.
    severity_folds: patient-grouped cross-validation folds of the calibration split (the
    severity reading is chosen by them). top_fraction: the per-lung top-mean feature.
    spectra_cutoffs: band edges as fractions of Nyquist. max_pixels: pixels pooled for a
    pixel AUROC (a seeded subsample above it). map_smoothing: the Gaussian sigmas, as
    fractions of the image width, that the pixel-level metrics try on the anomaly maps (0 =
    raw maps; chosen on calibration; the image-level statistics use the raw maps).
    pixel_maps: the anomaly maps of the pixel-level metrics, any of :data:`PIXEL_MAPS`
    ('abs' = |original - counterfactual|, 'removed' = max(original - counterfactual, 0)).
    batch_size / device: the classifier pass.
    """

    positive_class: str = POSITIVE_CLASS
    negative_class: str = HEALTHY_CLASS
    calibration_split: str = "calibration"
    test_split: str = "test"
    statistics: tuple[str, ...] = STATISTICS
    n_boot: int = 1000
    seed: int = 0
    severity_folds: int = 5
    top_fraction: float = 0.01
    spectra_cutoffs: tuple[float, ...] = (0.1, 0.25, 0.5)
    max_pixels: int = 2_000_000
    map_smoothing: tuple[float, ...] = (0.0, 0.03, 0.06)
    pixel_maps: tuple[str, ...] = tuple(PIXEL_MAPS)
    batch_size: int = 64
    device: str = "auto"

    def __post_init__(self):
        check(
            self.calibration_split != self.test_split,
            "calibration_split and test_split must differ: a setting chosen on the images it "
            "is reported on is not a result",
        )
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
        sigmas = list(self.map_smoothing)
        check(
            len(sigmas) >= 1 and len(set(sigmas)) == len(sigmas)
            and all(0 <= v < 0.5 for v in sigmas),
            f"map_smoothing must be distinct values in [0, 0.5), got {sigmas}",
        )  # fmt: skip
        unknown = sorted(set(self.pixel_maps) - set(PIXEL_MAPS))
        check(
            len(self.pixel_maps) >= 1 and not unknown,
            f"pixel_maps must be some of {list(PIXEL_MAPS)}, got {list(self.pixel_maps)}",
        )
        check(self.batch_size >= 1, "batch_size must be >= 1")
        check_device_name(self.device)


def classifier_table(classifier_dir: Path | None, images: ImageSet, cfg: EvaluateConfig):
    """p(positive | x, t = 0) of every image from the guidance classifier (None: no classifier)."""
    if classifier_dir is None:
        return None
    from cxrgen.classifier.model import load_classifier

    model = load_classifier(classifier_dir, resolve_device(cfg.device))
    positive = images.classes.index(cfg.positive_class)
    probs = detection.classifier_probabilities(
        model, images.view(IMAGES), cfg.batch_size, positive_label=positive
    )
    table = images.table[["row", "split", "image_id", "patient_id", "class_name"]].copy()
    table["p_positive"] = probs
    return table


def predicted_lung_masks(path: Path, images: ImageSet) -> RowView:
    """Predicted lung labels (one row per store row) in the order of ``images``."""
    array = np.load(path, mmap_mode="r")
    n_store = len(np.load(array_path(images.store_dir, IMAGES), mmap_mode="r"))
    if array.ndim != 3 or len(array) != n_store or tuple(array.shape[1:]) != images.shape:
        raise DataError(
            f"lung masks {path} {array.shape} do not match the store's {n_store} images of "
            f"{images.shape}: predict them for this store (cxrgen predict-lungseg)"
        )
    return RowView(array, images.table["store_row"].to_numpy())


def evaluate(
    latents_dir: str | Path,
    counterfactual_dirs: list[str | Path],
    store_dir: str | Path,
    out_dir: str | Path,
    cfg: EvaluateConfig,
    classifier_dir: str | Path | None = None,
    progress: bool = True,
    lung_masks: str | Path | None = None,
) -> pd.DataFrame:
    """Write every table of the module docstring; return the summary table.

    ``lung_masks``: predicted lung labels of every store row (``cxrgen predict-lungseg``'s
    ``lung_masks.npy``: 1 right, 2 left lung), read by the per-lung severity features instead
    of the image halves. The store's own lung masks never enter a feature (the phantoms' are
    ground truth that only scores; a real RSNA store has none).
    """
    latents_dir, store_dir, out_dir = Path(latents_dir), Path(store_dir), Path(out_dir)
    check(len(counterfactual_dirs) >= 1, "evaluate needs at least one counterfactual folder")
    images, _, meta = inverted_set(latents_dir, store_dir)
    for name in (cfg.positive_class, cfg.negative_class):
        check(name in images.classes, f"class {name!r} is not one of {list(images.classes)}")
    d = design(images, store_dir, cfg)
    settings = load_settings([Path(f) for f in counterfactual_dirs], images)
    original = images.view(IMAGES)
    masks = None if lung_masks is None else predicted_lung_masks(Path(lung_masks), images)
    tables: dict[str, pd.DataFrame] = {}

    scores = pd.concat([s.scores for s in settings], ignore_index=True)
    tables["table2"] = detection.table2(scores, grid=tuple(original.shape[1:]))
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
        columns=["row", "split", "image_id", "patient_id", "class_name", "p_positive"]
    )  # fmt: skip

    healthy, lesions = store_view(images, HEALTHY), store_view(images, LESION_MASKS)
    with_truth = d.lesion is not None
    has_targets = not d.targets.empty and d.targets.notna().any().any()
    test_view = original.subset(d.rows[d.test])
    test_labels = images.table["class_name"].to_numpy()[d.rows[d.test]]
    parts: dict[str, list[pd.DataFrame]] = {
        k: [] for k in ("localisation", "ground_truth", "severity", "severity_predictions",
                        "spectra", "spectra_curves")
    }  # fmt: skip
    bar = tqdm(settings, desc="evaluate", unit="setting", disable=not progress)
    for setting in bar:
        bar.set_postfix_str(f"{setting.method} {setting.scale:g}")
        absdiff, diff = setting.array("absdiff"), setting.array("diff")
        cf = setting.array("counterfactuals")
        if with_truth:
            errors = ground_truth.image_errors(original, cf, healthy, lesions)
            for split in (d.cal, d.test):
                table = ground_truth.error_summary(
                    errors, d.positive, d.rows[split], d.groups,
                    cfg.n_boot if split == d.test else 0, cfg.seed,
                )  # fmt: skip
                parts["ground_truth"].append(
                    tagged(table, setting, map="", smoothing=np.nan, split=split)
                )
        loc, gt = pixel_tables(setting, original, lesions, d, cfg)
        parts["localisation"] += loc
        parts["ground_truth"] += gt
        if has_targets:
            features = severity.lung_features(diff, absdiff, masks, cfg.top_fraction)
            sev, preds = severity_tables(features, setting, d, cfg, SEVERITY_READINGS)
            parts["severity"] += sev
            parts["severity_predictions"] += preds
        test_cf = np.asarray(cf[d.rows[d.test]])
        test_diff = np.asarray(diff[d.rows[d.test]])
        table = spectra.band_energy_table(
            test_view, test_cf, cfg.spectra_cutoffs, labels=test_labels
        )
        parts["spectra"].append(tagged(table, setting, split=d.test))
        curves = spectrum_curves(test_view, test_cf, test_diff)
        parts["spectra_curves"].append(tagged(curves, setting, split=d.test))
    if has_targets and probs is not None:
        baseline = Setting("classifier", np.nan, latents_dir, pd.DataFrame())
        sev, preds = severity_tables(
            probs[["p_positive"]], baseline, d, cfg, {CLASSIFIER_READING: ["p_positive"]}
        )
        parts["severity"] += sev
        parts["severity_predictions"] += preds
    for name, frames in parts.items():
        tables[name] = pd.concat(frames, ignore_index=True) if frames else empty(name)
    label_informed = bool(meta.get("label_informed", False))
    for table in tables.values():
        table["label_informed"] = label_informed
    tables["inversion"] = inversion_summary(images.table)

    tables["summary"] = summary_table(tables, d.cal, d.test, label_informed)
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
        lung_masks=None if lung_masks is None else str(lung_masks),
        classifier=None if classifier_dir is None else str(classifier_dir),
        label_informed=label_informed,
    )
    log.info("evaluation of %d settings written to %s", len(settings), out_dir)
    return tables["summary"]


HTML_TABLES = {
    "summary": (
        "Counterfactual evaluation: summary",
        "Headline numbers of the run, each on the test split with a patient-bootstrap 95% "
        "interval, for the setting chosen on the calibration split: detection, localisation, "
        "phantom ground truth, severity among opacity images, inversion fidelity, Table 2.",
    ),
    "detection": (
        "Image-level detection of lung opacity from the difference maps",
        "AUROC and average precision with patient-level bootstrap 95% intervals per method, "
        "scale, split and per-image statistic; reference rows: the guidance classifier at "
        "t = 0 and the published unsupervised alpha-GAN result on RSNA.",
    ),
    "table2": (
        "Table 2: mean per-image sum of the absolute difference",
        "Per split, method, scale and class, beside the paper's validation-set values. Ours "
        "are sums over the stored grid of intensities in [0, 1] (column units); the paper "
        "states neither its image size nor its intensity range.",
    ),
}

EMPTY_COLUMNS = {
    "localisation": ["method", "scale", "map", "smoothing", "split", "metric", "value",
                     "n_images", "threshold", "ci_low", "ci_high"],
    "ground_truth": ["method", "scale", "map", "smoothing", "split", "metric", "value",
                     "n_images", "subset", "threshold", "ci_low", "ci_high"],
    "severity": ["method", "scale", "split", "subset", "feature_set", "score", "metric",
                 "value", "ci_low", "ci_high", "n"],
    "severity_predictions": ["method", "scale", "subset", "row", "score", "feature_set", "true",
                             "predicted"],
    "spectra": ["method", "scale", "split", "image_kind", "class_name", "band_low",
                "band_high", "energy", "n"],
    "spectra_curves": ["method", "scale", "split", "image_kind", "frequency", "power"],
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
    """Reconstruction fidelity of the inversion per split, per class and overall."""
    rows = []
    if "split" not in table.columns:
        table = table.assign(split="")
    for split, part in table.groupby("split", sort=True):
        for name, group in [("all", part), *part.groupby("class_name")]:
            rows.append(
                {
                    "split": split,
                    "class_name": name,
                    "n": len(group),
                    "psnr_median": float(group["recon_psnr"].median()),
                    "psnr_min": float(group["recon_psnr"].min()),
                    "max_abs_error": float(group["recon_max_abs"].max()),
                    "mae_mean": float(group["recon_mae"].mean()),
                }
            )
    return pd.DataFrame(rows)
