"""Patient-level, label-stratified, seeded train / calibration / test split of a tensor store.

The three splits have three jobs: models learn on ``train``; every setting chosen from data
(guidance method and scale, statistic, map smoothing, thresholds, severity regressions) is
chosen on ``calibration``; the headline numbers are computed once on ``test``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cxrgen import io, provenance
from cxrgen.config import check
from cxrgen.data.classes import HEALTHY_CLASS, POSITIVE_CLASS, write_classes
from cxrgen.data.store import CLASSES_FILE, SPLIT_FILE, read_index
from cxrgen.errors import DataError
from cxrgen.html_tables import write_html_table

log = logging.getLogger(__name__)

EXCLUDED = "excluded"
SOURCE_SPLIT_NAMES = {"train": "train", "val": "valid", "valid": "valid", "test": "test"}


@dataclass(frozen=True)
class SplitConfig:
    """How to split one tensor store.

    seed: shuffles patients within each class stratum.
    fractions / names: one fraction per named split, summing to 1 (default 70/15/15 train /
        calibration / test; the paper's 80/20 train/valid is presets/rsna_paper_split.yaml).
    classes: class names kept, in label order (label i = classes[i]); rows of other classes are
        written with split 'excluded'. None keeps every class of the store, sorted by name.
    keep_source_split: use the store's own split (e.g. COVID-QU-Ex Train/Val/Test folders)
        instead of drawing one; patients are then not re-grouped.
    """

    seed: int = 0
    fractions: tuple[float, ...] = (0.7, 0.15, 0.15)
    names: tuple[str, ...] = ("train", "calibration", "test")
    classes: tuple[str, ...] | None = (HEALTHY_CLASS, POSITIVE_CLASS)
    keep_source_split: bool = False

    def __post_init__(self):
        check(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        check(
            len(self.fractions) == len(self.names),
            "split: 'fractions' and 'names' differ in length",
        )
        check(len(set(self.names)) == len(self.names), "split: 'names' must be unique")
        check(EXCLUDED not in self.names, f"split: '{EXCLUDED}' is reserved and cannot be a name")
        check(all(0 < f <= 1 for f in self.fractions), "split: every fraction must be in (0, 1]")
        check(
            abs(sum(self.fractions) - 1.0) < 1e-6,
            f"split: fractions {self.fractions} must sum to 1",
        )
        if self.classes is not None:
            check(len(self.classes) >= 2, "split: 'classes' needs at least two class names")
            check(len(set(self.classes)) == len(self.classes), "split: 'classes' has duplicates")


def assign_patients(
    patients: pd.DataFrame, fractions: tuple[float, ...], names: tuple[str, ...], seed: int
) -> pd.Series:
    """Assign each patient (rows: patient_id, stratum, n_images) to a split name.

    Within each stratum, patients are put in a seeded random order and cut where the cumulative
    image count crosses each fraction, so every split gets its share of images of every
    stratum. Written here rather than with scikit-learn's StratifiedGroupKFold because that
    only produces k equal folds, not arbitrary fractions or more than two named splits.
    """
    rng = np.random.default_rng(seed)
    out = pd.Series(index=patients.index, dtype=object)
    bounds = np.cumsum(fractions)
    for _, group in patients.sort_values("patient_id").groupby("stratum", sort=True):
        order = group.index.to_numpy()[rng.permutation(len(group))]
        counts = group.loc[order, "n_images"].to_numpy()
        # position of each patient's midpoint in the cumulative image count, as a fraction
        mid = (np.cumsum(counts) - counts / 2) / counts.sum()
        which = np.searchsorted(bounds, mid, side="right").clip(max=len(names) - 1)
        out.loc[order] = [names[i] for i in which]
    return out


def make_split(index: pd.DataFrame, cfg: SplitConfig) -> tuple[pd.DataFrame, list[str]]:
    """Return (split table, kept class names in label order) for a store's index table."""
    missing = {"row", "image_id", "patient_id", "class_name"} - set(index.columns)
    if missing:
        raise DataError(f"index table lacks column(s) {sorted(missing)}: re-run preprocess")
    if index["class_name"].isna().all():
        raise DataError(
            "the tensor store has no labels: give the preprocess stage a labels / class-info CSV "
            "or an image-folder layout with class folders"
        )
    present = sorted(index["class_name"].dropna().unique())
    classes = list(cfg.classes) if cfg.classes is not None else present
    absent = [c for c in classes if c not in present]
    if absent:
        raise DataError(
            f"split.classes names {absent}, which no stored image has; the store holds {present}"
        )
    table = index[["row", "image_id", "patient_id", "class_name"]].copy()
    kept = table["class_name"].isin(classes)
    table["label"] = table["class_name"].map({c: i for i, c in enumerate(classes)})
    table["label"] = table["label"].where(kept, -1).astype("int64")
    table["split"] = EXCLUDED

    if cfg.keep_source_split:
        if "source_split" not in index.columns or index.loc[kept, "source_split"].isna().any():
            raise DataError(
                "split.keep_source_split is set but the store has no source split for some "
                "images (only image folders under Train/Val/Test have one)"
            )
        src = index.loc[kept, "source_split"].str.lower().map(SOURCE_SPLIT_NAMES)
        table.loc[kept, "split"] = src.fillna(index.loc[kept, "source_split"])
    else:
        sub = table[kept]
        # A patient's stratum is its most frequent kept class (ties: the later class, i.e. the
        # abnormal one when classes list Normal first), so a patient with mixed images counts
        # once, on the side that is rarer in practice.
        patients = (
            sub.groupby("patient_id")["label"]
            .agg(
                stratum=lambda s: s.value_counts().sort_index(ascending=False).idxmax(),
                n_images="size",
            )
            .reset_index()
        )
        patients["split"] = assign_patients(patients, cfg.fractions, cfg.names, cfg.seed)
        table.loc[kept, "split"] = sub["patient_id"].map(patients.set_index("patient_id")["split"])

    leaked = table[kept].groupby("patient_id")["split"].nunique()
    if (leaked > 1).any() and not cfg.keep_source_split:  # cannot happen by construction
        raise AssertionError(f"patients in two splits: {list(leaked[leaked > 1].index[:5])}")
    return table.reset_index(drop=True), classes


def count_table(table: pd.DataFrame) -> pd.DataFrame:
    """Images and patients per split x class (the paper's data table), as a tidy frame."""
    return (
        table.groupby(["split", "class_name"], dropna=False)
        .agg(n_images=("row", "size"), n_patients=("patient_id", "nunique"))
        .reset_index()
        .sort_values(["split", "class_name"], ignore_index=True)
    )


def run_split(store_dir: str | Path, out_dir: str | Path, cfg: SplitConfig) -> pd.DataFrame:
    """Split the store in ``store_dir``; write split.parquet, counts.parquet (+ .html),
    classes.json."""
    store_dir, out_dir = Path(store_dir), Path(out_dir)
    table, classes = make_split(read_index(store_dir), cfg)
    counts = count_table(table)
    io.write_parquet(out_dir / SPLIT_FILE, table)
    io.write_parquet(out_dir / "counts.parquet", counts)
    write_html_table(
        out_dir / "counts.html", counts, f"Split of {store_dir.name}",
        "Images and patients per split and class (patient-level, stratified, seeded).",
    )  # fmt: skip
    write_classes(out_dir / CLASSES_FILE, classes)
    provenance.write(out_dir / "provenance.json", "split", cfg, store=str(store_dir))
    log.info("split %d images:\n%s", len(table), counts.to_string(index=False))
    return counts
