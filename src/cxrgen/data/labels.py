"""Labels: RSNA label CSVs, RALO-style severity CSVs, per-image ground-truth arrays.

RSNA Pneumonia Detection semantics: ``patientId`` in both CSVs is the image
id (the DICOM file stem), not a patient grouping key.

* ``stage_2_train_labels.csv`` (patientId, x, y, width, height, Target): one
  row per box for Target 1 images, one row with empty box fields for Target 0.
  Boxes are native pixel coordinates, top-left corner plus size.
* ``stage_2_detailed_class_info.csv`` (patientId, class): "Normal",
  "Lung Opacity" or "No Lung Opacity / Not Normal"; rows may repeat per box.

Without the class-info CSV the class comes from Target: 1 -> "Lung Opacity",
0 -> "No Opacity" (which lumps Normal with No Lung Opacity / Not Normal).
A RALO-layout data set has only a severity CSV: :func:`labels_from_severity` reads
"Lung Opacity" / "Normal" off its scores.

Every CSV check raises :class:`~cxrgen.errors.DataError` naming the file and
what to fix. Ground truth (:func:`read_ground_truth`) is per image: a bad file
rejects its image (:class:`~cxrgen.data.dicom.Rejected`), not the stage.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cxrgen.data.classes import LUNG_OPACITY, NORMAL
from cxrgen.data.dicom import Rejected
from cxrgen.data.store import GROUND_TRUTH_ARRAYS, RALO_COLUMNS
from cxrgen.errors import ConfigError, DataError

LABEL_COLUMNS = ("patientId", "x", "y", "width", "height", "Target")
CLASS_INFO_COLUMNS = ("patientId", "class")
SEVERITY_COLUMNS = ("patientId", *RALO_COLUMNS)
TARGET_CLASS_NAMES = {0: "No Opacity", 1: LUNG_OPACITY}


@dataclass(frozen=True)
class ImageLabel:
    """The labels of one image id."""

    class_name: str
    target: int
    boxes: tuple[tuple[float, float, float, float], ...]  # native [x, y, w, h]


def read_csv_checked(path: Path, columns: Iterable[str], what: str) -> pd.DataFrame:
    """Read a CSV and check it has ``columns``; ids are read as strings."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist or is not a file")
    try:
        df = pd.read_csv(path, dtype={"patientId": str})
    except Exception as exc:
        raise DataError(f"{what} {path} could not be read as CSV: {exc}") from exc
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(
            f"{what} {path} lacks column(s) {', '.join(missing)}; "
            f"expected {', '.join(columns)}, found {', '.join(map(str, df.columns)) or 'none'}"
        )
    ids = df["patientId"]
    if ids.isna().any() or (ids.str.strip() == "").any():
        rows = [int(i) + 2 for i in np.flatnonzero(ids.isna() | (ids.fillna("").str.strip() == ""))]
        raise DataError(f"{what} {path} has empty patientId on line(s) {_few(rows)}")
    df["patientId"] = ids.str.strip()
    return df


def read_rsna_labels(labels_csv: Path, class_info_csv: Path | None = None) -> dict[str, ImageLabel]:
    """Parse and cross-check the RSNA CSVs into ``{image_id: ImageLabel}``."""
    df = read_csv_checked(labels_csv, LABEL_COLUMNS, "labels CSV")
    target = pd.to_numeric(df["Target"], errors="coerce")
    bad = ~target.isin([0, 1])
    if bad.any():
        raise DataError(
            f"labels CSV {labels_csv}: Target must be 0 or 1; bad values on line(s) "
            f"{_few([int(i) + 2 for i in np.flatnonzero(bad)])}"
        )
    df["Target"] = target.astype(int)
    per_id = df.groupby("patientId", sort=True)["Target"].nunique()
    if (per_id > 1).any():
        raise DataError(
            f"labels CSV {labels_csv}: rows of one patientId disagree on Target for "
            f"{_few(per_id.index[per_id > 1])}"
        )
    coords = df[["x", "y", "width", "height"]].apply(pd.to_numeric, errors="coerce")
    has_box = coords.notna().all(axis=1)
    positive = df["Target"] == 1
    bad_box = positive & (~has_box | (coords["width"] <= 0) | (coords["height"] <= 0))
    if bad_box.any():
        raise DataError(
            f"labels CSV {labels_csv}: Target 1 rows need numeric x, y and positive width, height; "
            f"bad on line(s) {_few([int(i) + 2 for i in np.flatnonzero(bad_box)])}"
        )
    stray = ~positive & coords.notna().any(axis=1)
    if stray.any():
        raise DataError(
            f"labels CSV {labels_csv}: Target 0 rows must leave x, y, width, height empty; "
            f"line(s) {_few([int(i) + 2 for i in np.flatnonzero(stray)])}"
        )

    classes = _read_class_info(class_info_csv, df, labels_csv) if class_info_csv else None
    out: dict[str, ImageLabel] = {}
    for image_id, group in df.groupby("patientId", sort=True):
        tgt = int(group["Target"].iloc[0])
        boxes = tuple(
            tuple(float(v) for v in row)
            for row in coords.loc[group.index][group["Target"] == 1].to_numpy()
        )
        name = classes[image_id] if classes is not None else TARGET_CLASS_NAMES[tgt]
        out[str(image_id)] = ImageLabel(class_name=name, target=tgt, boxes=boxes)
    return out


def _read_class_info(path: Path, labels: pd.DataFrame, labels_csv: Path) -> dict[str, str]:
    df = read_csv_checked(path, CLASS_INFO_COLUMNS, "class-info CSV")
    if df["class"].isna().any():
        raise DataError(f"class-info CSV {path} has empty class values")
    df["class"] = df["class"].astype(str).str.strip()
    n_classes = df.groupby("patientId")["class"].nunique()
    if (n_classes > 1).any():
        raise DataError(
            f"class-info CSV {path}: one patientId has several classes: "
            f"{_few(n_classes.index[n_classes > 1])}"
        )
    classes = df.drop_duplicates("patientId").set_index("patientId")["class"]
    label_ids, class_ids = set(labels["patientId"]), set(classes.index)
    if label_ids != class_ids:
        only_l, only_c = sorted(label_ids - class_ids), sorted(class_ids - label_ids)
        raise DataError(
            f"class-info CSV {path} and labels CSV {labels_csv} list different ids: "
            f"{len(only_l)} only in the labels CSV ({_few(only_l)}), "
            f"{len(only_c)} only in the class-info CSV ({_few(only_c)}); use the matching pair"
        )
    target = labels.drop_duplicates("patientId").set_index("patientId")["Target"]
    joined = pd.DataFrame({"class": classes, "Target": target.reindex(classes.index)})
    if LUNG_OPACITY in set(joined["class"]):
        wrong = joined.index[(joined["class"] == LUNG_OPACITY) != (joined["Target"] == 1)]
    else:
        per_class = joined.groupby("class")["Target"].nunique()
        wrong = joined.index[joined["class"].isin(per_class.index[per_class > 1])]
    if len(wrong):
        raise DataError(
            f"class-info CSV {path} contradicts Target in labels CSV {labels_csv} for "
            f"{len(wrong)} id(s) ({_few(sorted(wrong))}): class '{LUNG_OPACITY}' must go with "
            "Target 1 and every other class with Target 0"
        )
    return {str(k): str(v) for k, v in classes.items()}


def read_severity(path: Path) -> pd.DataFrame:
    """Severity scores indexed by image id (float64 columns, NaN for empty cells)."""
    df = read_csv_checked(path, SEVERITY_COLUMNS, "severity CSV")
    dup = df["patientId"][df["patientId"].duplicated()]
    if len(dup):
        raise DataError(f"severity CSV {path} repeats patientId {_few(sorted(set(dup)))}")
    scores = df[list(SEVERITY_COLUMNS[1:])]
    numeric = scores.apply(pd.to_numeric, errors="coerce")
    bad = (numeric.isna() & scores.notna()) | (numeric < 0)
    if bad.any().any():
        lines = [int(i) + 2 for i in np.flatnonzero(bad.any(axis=1))]
        raise DataError(
            f"severity CSV {path}: scores must be non-negative numbers; "
            f"bad on line(s) {_few(lines)}"
        )
    numeric.index = df["patientId"].to_numpy()
    return numeric.astype(np.float64)


def labels_from_severity(severity: pd.DataFrame) -> dict[str, ImageLabel]:
    """Labels of a data set that has severity scores and no class labels (the RALO layout).

    An image is Lung Opacity (target 1) when one of its scores is above 0 and Normal
    (target 0) when its scores are all 0; an image whose scores are all empty gets no label.
    The class is read off the severity labels, never from the images: a scored data set's
    detection task and its "opacity images" subset.
    """
    out: dict[str, ImageLabel] = {}
    values = severity.to_numpy(np.float64)
    for image_id, row in zip(severity.index, values, strict=True):
        known = row[np.isfinite(row)]
        if known.size:
            opacity = bool((known > 0).any())
            name = LUNG_OPACITY if opacity else NORMAL
            out[str(image_id)] = ImageLabel(class_name=name, target=int(opacity), boxes=())
    return out


def read_ground_truth(path: Path, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """``{image_id}.npz`` -> healthy (float32 in [0, 1]), lesion (uint8 0/1), lungs (uint8).

    ``healthy`` is on the scale of :func:`cxrgen.data.intensity.to_unit_interval`;
    ``lungs`` is 0 background, 1 right lung, 2 left lung. Every array must have
    the image's native ``shape``; otherwise :class:`Rejected` ("bad_ground_truth").
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k]) for k in GROUND_TRUTH_ARRAYS if k in z.files}
    except Exception as exc:  # a bad file rejects its image, not the stage
        raise Rejected("bad_ground_truth", f"{Path(path).name} unreadable: {exc}") from None
    missing = [k for k in GROUND_TRUTH_ARRAYS if k not in arrays]
    wrong = [f"{k} {a.shape}" for k, a in arrays.items() if a.shape != tuple(shape)]
    if missing or wrong:
        raise Rejected(
            "bad_ground_truth",
            f"{Path(path).name}: missing {missing}, shape mismatch {wrong} (image {shape})",
        )
    return {
        "healthy": np.clip(arrays["healthy"].astype(np.float32), 0.0, 1.0),
        "lesion": (arrays["lesion"] > 0).astype(np.uint8),
        "lungs": arrays["lungs"].astype(np.uint8),
    }


def check_ids_known(ids: Iterable[str], known: set[str], what: str, path: Path) -> None:
    """DataError when some ``ids`` (from a CSV) match no input image id."""
    unknown = sorted(set(ids) - known)
    if unknown:
        raise DataError(
            f"{len(unknown)} id(s) in {what} {path} match no input file, e.g. {_few(unknown)}; "
            "point the stage at the folder holding those images, or set "
            "allow_unmatched_labels: true to ignore them"
        )


def class_names(present: Iterable[str], explicit: tuple[str, ...] | None) -> list[str]:
    """The class order: ``explicit`` when given (it must be unique), else sorted names."""
    if explicit is not None:
        if len(set(explicit)) != len(explicit):
            raise ConfigError(f"classes lists a name twice: {list(explicit)}")
        return list(explicit)
    return sorted(set(present))


def _few(items: Iterable, n: int = 5) -> str:
    items = list(items)
    head = ", ".join(str(i) for i in items[:n])
    return head + (f", ... ({len(items)} in all)" if len(items) > n else "")


def read_labels(aux: dict, known: set[str], allow_unmatched: bool):
    """The RSNA labels ({image_id: ImageLabel}) and severity table, or None; ids checked."""
    label_map = severity = None
    if aux["labels_csv"] is not None:
        label_map = read_rsna_labels(aux["labels_csv"], aux["class_info_csv"])
        if not allow_unmatched:
            check_ids_known(label_map, known, "labels CSV", aux["labels_csv"])
    if aux["severity_csv"] is not None:
        severity = read_severity(aux["severity_csv"])
        if not allow_unmatched:
            check_ids_known(severity.index, known, "severity CSV", aux["severity_csv"])
    return label_map, severity


def resolve_path(value: str | None, input_dir: Path, key: str, is_dir: bool = False) -> Path | None:
    """A config path as given if it exists, else relative to ``input_dir``; DataError if neither."""
    if value is None:
        return None
    given = Path(value)
    candidates = [given] if given.is_absolute() else [given, input_dir / given]
    for cand in candidates:
        if cand.is_dir() if is_dir else cand.is_file():
            return cand
    kind = "folder" if is_dir else "file"
    raise DataError(
        f"{key} {kind} not found: looked at {' and '.join(map(str, candidates))}; "
        f"give the right path, or set {key} to null if the data set has none"
    )
