"""The held-out design of an evaluation: which inverted images are calibration and test, and
the per-split tables that choose a setting on one and report it on the other.

* :class:`Design` / :func:`design`: positions of the calibration and test images, patient
  ids, classes, lesion rows, boxes and RALO targets of the inverted images (read only to
  score);
* :func:`pixel_tables`: localisation (boxes) and lesion agreement of every anomaly map and
  smoothing, calibration first; the test Dice uses the calibration threshold, and the test
  rows carry patient-bootstrap intervals;
* :func:`severity_tables`: each severity reading cross-validated on calibration (the choice)
  and fitted on calibration to predict test (the result), among opacity images and all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cxrgen.data.store import HEALTHY, LESION_MASKS, RALO_COLUMNS, ImageSet, read_index, store_view
from cxrgen.errors import DataError
from cxrgen.evaluation import ground_truth, localisation, severity
from cxrgen.evaluation.inputs import Setting, pixel_map_views

if TYPE_CHECKING:
    from cxrgen.evaluation.evaluate import EvaluateConfig

OPACITY, ALL = "opacity images", "all images"


def tagged(table: pd.DataFrame, setting: Setting, **columns) -> pd.DataFrame:
    """``table`` with the setting's method and scale (and ``columns``) as first columns."""
    table = table.copy()
    for i, (name, value) in enumerate(
        {"method": setting.method, "scale": setting.scale, **columns}.items()
    ):
        table.insert(i, name, value)
    return table


def per_image(index: pd.DataFrame, images: ImageSet, columns) -> pd.DataFrame:
    """Columns of the store's index (``row`` as its index) in the order of the images."""
    present = [c for c in columns if c in index.columns]
    return index.loc[images.table["store_row"], present].reset_index(drop=True)


@dataclass(frozen=True)
class Design:
    """Who is who among the inverted images: splits, patients, classes, lesions, targets."""

    cal: str
    test: str
    rows: dict[str, np.ndarray]  # split -> positions
    groups: np.ndarray  # patient id per image
    positive: np.ndarray  # bool per image
    lesion: np.ndarray | None  # positions with a true lesion mask (phantoms)
    contrast: np.ndarray | None  # mean |original - healthy| inside the lesion (phantoms)
    boxes: list | None
    targets: pd.DataFrame  # RALO scores per image (may be empty)

    def subset(self, split: str, which: str = ALL) -> np.ndarray:
        rows = self.rows[split]
        return rows[self.positive[rows]] if which == OPACITY else rows


def design(images: ImageSet, store_dir: Path, cfg: EvaluateConfig) -> Design:
    present = set(images.table["split"]) if "split" in images.table else set()
    for name in (cfg.calibration_split, cfg.test_split):
        if name not in present:
            raise DataError(
                f"the inversion holds no images of split {name!r} (it has {sorted(present)}): "
                "invert the calibration and the test split (invert.splits)"
            )
    index = read_index(store_dir).set_index("row")
    boxes = per_image(index, images, ["boxes"])["boxes"].tolist() if "boxes" in index else None
    if boxes is not None and not any(len(localisation.as_boxes(b)) for b in boxes):
        boxes = None
    lesions = store_view(images, LESION_MASKS)
    with_truth = lesions is not None and images.has(HEALTHY)
    contrast = None
    if with_truth:
        original = images.view()
        truth = ground_truth.image_errors(original, original, images.view(HEALTHY), lesions)
        contrast = truth["orig_in"].to_numpy()
    split = images.table["split"].to_numpy()
    return Design(
        cal=cfg.calibration_split,
        test=cfg.test_split,
        rows={s: np.flatnonzero(split == s) for s in (cfg.calibration_split, cfg.test_split)},
        groups=images.table["patient_id"].astype(str).to_numpy(),
        positive=(images.table["class_name"] == cfg.positive_class).to_numpy(),
        lesion=ground_truth.lesion_rows(lesions) if with_truth else None,
        contrast=contrast,
        boxes=boxes,
        targets=per_image(index, images, RALO_COLUMNS),
    )


def pixel_tables(setting, original, lesions, d: Design, cfg: EvaluateConfig):
    """Localisation (boxes) and lesion agreement of every map and smoothing, calibration then
    test; the test Dice uses the threshold chosen on calibration."""
    loc, gt = [], []
    for sigma in cfg.map_smoothing:
        views = pixel_map_views(setting, cfg.pixel_maps, sigma * original.shape[-1])
        for name, maps in views.items():
            for kind, out in (("boxes", loc), ("lesion", gt)):
                if (kind == "boxes" and d.boxes is None) or (kind == "lesion" and d.lesion is None):
                    continue
                chosen = None
                for split in (d.cal, d.test):
                    n_boot = cfg.n_boot if split == d.test else 0
                    if kind == "boxes":
                        table = localisation.localisation_table(
                            maps, d.boxes, chosen, max_pixels=cfg.max_pixels, seed=cfg.seed,
                            rows=d.rows[split], groups=d.groups, n_boot=n_boot,
                        )  # fmt: skip
                    else:
                        rows = np.intersect1d(d.lesion, d.rows[split])
                        table = ground_truth.lesion_agreement(
                            maps, lesions, thresholds=chosen, max_pixels=cfg.max_pixels,
                            seed=cfg.seed, rows=rows, groups=d.groups, n_boot=n_boot,
                        )  # fmt: skip
                        faint = ground_truth.lesion_agreement(
                            maps, lesions, max_pixels=cfg.max_pixels,
                            seed=cfg.seed, rows=ground_truth.fainter_half(d.contrast, rows),
                            groups=d.groups, n_boot=n_boot,
                        )  # fmt: skip
                        faint = faint[faint["metric"] == "pixel_auroc_pooled"]
                        table = pd.concat([table, faint.assign(subset=ground_truth.FAINT)])
                    dice = table.loc[table["metric"] == "dice", "threshold"]
                    if chosen is None and dice.notna().any():
                        chosen = [float(dice.iloc[0])]
                    out.append(tagged(table, setting, map=name, smoothing=sigma, split=split))
    return loc, gt


def severity_tables(features: pd.DataFrame, setting, d: Design, cfg, sets) -> tuple[list, list]:
    """Per subset (opacity images, all images): the cross-validated readings on calibration
    (the choice) and the calibration-fitted readings on test (the result)."""
    tables, predictions = [], []
    for subset in (OPACITY, ALL):
        cal, test = d.subset(d.cal, subset), d.subset(d.test, subset)
        table, _ = severity.severity_cv(
            features.iloc[cal].reset_index(drop=True), d.targets.iloc[cal].reset_index(drop=True),
            d.groups[cal], sets, cfg.severity_folds, cfg.seed,
        )  # fmt: skip
        tables.append(tagged(table, setting, split=d.cal, subset=subset))
        table, preds = severity.transfer_table(
            features.iloc[cal], d.targets.iloc[cal], features.iloc[test], d.targets.iloc[test],
            d.groups[test], sets, cfg.n_boot, cfg.seed,
        )  # fmt: skip
        tables.append(tagged(table, setting, split=d.test, subset=subset))
        predictions.append(tagged(preds, setting, subset=subset))
    return tables, predictions
