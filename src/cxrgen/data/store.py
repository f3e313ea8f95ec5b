"""The tensor store's format (file, array and column names), its writers and its one reader.

A store folder (``data/{dataset}/``, written by the preprocess stage) holds:

* ``{array}.npy`` for each of :data:`STORE_ARRAYS` it has, (N, H, W), row i of each the
  image of row i of the index: ``images`` and ``healthy`` (the phantoms' lesion-free twin)
  quantized to uint16 / uint8 (:func:`cxrgen.data.geometry.quantize`; :data:`UNIT_ARRAYS`),
  ``lesion_masks`` and ``lung_masks`` uint8;
* ``index.parquet`` (:data:`INDEX_SCHEMA`, then the :data:`RALO_COLUMNS` when the data set
  has severity scores), ``rejected.parquet`` (:data:`REJECTED_SCHEMA`), ``classes.json``.

A split folder (``splits/{dataset}/``) holds ``split.parquet`` (row, image_id, patient_id,
class_name, label, split) and ``classes.json``. Inputs may carry ground truth as
``{image_id}.npz`` archives of the :data:`GROUND_TRUTH_ARRAYS`.

Reading: :func:`unit_float` / :func:`unit_rows` turn stored intensities into float32 in
[0, 1]; :func:`load_split` gives the labelled images of one split, :func:`image_set` those of
several splits with their ids in a fixed order, and :class:`RowView` (:meth:`ImageSet.view`,
:func:`store_view`) any store array's rows in that order, read lazily.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cxrgen import io
from cxrgen.data.classes import read_classes
from cxrgen.data.geometry import dequantize
from cxrgen.errors import DataError

# Arrays of a store folder, each in {name}.npy.
IMAGES, HEALTHY, LESION_MASKS, LUNG_MASKS = "images", "healthy", "lesion_masks", "lung_masks"
STORE_ARRAYS = (IMAGES, HEALTHY, LESION_MASKS, LUNG_MASKS)
UNIT_ARRAYS = (IMAGES, HEALTHY)  # quantized intensities, read as float32 in [0, 1]
# Tables and JSON files of the store, split and latents folders.
INDEX_FILE = "index.parquet"
REJECTED_FILE = "rejected.parquet"
CLASSES_FILE = "classes.json"
SPLIT_FILE = "split.parquet"
# RALO severity (index.parquet, the severity CSV, the phantoms' table): extent and opacity
# 0-4 per lung (right = the patient's right lung, image left), then their 0-8 totals.
RALO_COLUMNS = (
    "extent_right",
    "extent_left",
    "opacity_right",
    "opacity_left",
    "extent_total",
    "opacity_total",
)
RALO_TOTALS = RALO_COLUMNS[4:]
# Arrays of a ground-truth archive {image_id}.npz on the native grid: the healthy twin
# (float in [0, 1]), the lesion mask (0/1) and the lung labels (0 background, 1 right, 2 left).
GROUND_TRUTH_ARRAYS = ("healthy", "lesion", "lungs")

#: index.parquet columns, in order (severity columns, float64, are appended when given).
INDEX_SCHEMA = pa.schema(
    [
        ("row", pa.int64()),  # row in images.npy (and healthy / mask arrays)
        ("image_id", pa.string()),  # file name without .dcm / image suffix
        ("patient_id", pa.string()),  # DICOM PatientID (or salted hash); image id otherwise
        ("file", pa.string()),  # path relative to input_dir, POSIX separators
        ("label", pa.int64()),  # index into classes.json names; -1 unlabeled
        ("class_name", pa.string()),  # null when unlabeled
        ("target", pa.int64()),  # RSNA Target; -1 without a labels CSV
        ("n_boxes", pa.int64()),
        ("boxes", pa.list_(pa.list_(pa.float64()))),  # [[x, y, w, h], ...] on the stored grid
        ("orig_rows", pa.int64()),  # native image shape
        ("orig_cols", pa.int64()),
        ("photometric", pa.string()),  # MONOCHROME1/2 (DICOM), MONOCHROME2 or RGB (images)
        ("transfer_syntax", pa.string()),  # UID name, e.g. "RLE Lossless"; null for images
        ("file_format", pa.string()),  # "DICOM", "PNG", "JPEG", "TIFF", ...
        ("bits_stored", pa.int64()),
        ("n_frames", pa.int64()),  # frames in the file; frame 1 is stored
        ("source_split", pa.string()),  # "train" / "val" / "test" from an ancestor folder
    ]
)
REJECTED_SCHEMA = pa.schema(
    [(k, pa.string()) for k in ("file", "image_id", "reason_code", "reason")]
)


def array_path(folder: str | Path, name: str) -> Path:
    """The file of array ``name`` in a store (or latents, or generated-set) folder."""
    return Path(folder) / f"{name}.npy"


def finish_array(spill: Path, target: Path, n: int, n_spill: int) -> None:
    """Move the spill array into place, or copy its first ``n`` rows when some inputs failed."""
    if n == n_spill:
        os.replace(spill, target)  # a complete .npy, renamed in one step
        return
    src = np.load(spill, mmap_mode="r")
    with io.open_npy_memmap(target, (n, *src.shape[1:]), src.dtype) as dst:
        for start in range(0, n, 1024):
            dst[start : start + 1024] = src[start : min(start + 1024, n)]
    del src


def write_table(path: Path, rows: list[dict], schema: pa.Schema) -> Path:
    table = pa.Table.from_pylist(rows, schema=schema)
    with io.atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def stored_preprocessing(store_dir: str | Path) -> dict | None:
    """The preprocessing config a store was written with (what ``cxrgen apply`` repeats on
    new images); None for a store without provenance."""
    path = Path(store_dir) / "provenance.json"
    return io.read_json(path).get("config") if path.exists() else None


def read_index(store_dir: str | Path) -> pd.DataFrame:
    """The store's index table (DataError when there is no store)."""
    path = Path(store_dir) / INDEX_FILE
    if not path.exists():
        raise DataError(f"no tensor store at {store_dir} (missing {INDEX_FILE}): run preprocess")
    return pd.read_parquet(path)


def unit_float(stored: np.ndarray) -> np.ndarray:
    """Stored intensities -> a new float32 array in [0, 1]: unsigned integers dequantized
    (:func:`~cxrgen.data.geometry.dequantize`), floats taken as they are."""
    if stored.dtype.kind == "u":
        return dequantize(stored)
    return np.array(stored, dtype=np.float32)


def unit_rows(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``array[rows]`` as float32 in [0, 1], read in ascending row order (memory maps)."""
    rows = np.asarray(rows)
    order = np.argsort(rows)
    out = np.empty((len(rows), *array.shape[1:]), np.float32)
    out[order] = unit_float(np.asarray(array[rows[order]]))
    return out


@dataclass(frozen=True)
class SplitImages:
    """The images of one split: rows of ``images.npy``, labels, class names, image size.

    ``targets_path``: optional per-pixel targets, an integer (len, H, W) ``.npy`` whose row i
    belongs to image i of the split (not to a store row); the training data then yield them
    in place of the class labels (:class:`cxrgen.training.data.XrayDataset`).
    """

    images_path: Path
    rows: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    height: int
    width: int
    targets_path: Path | None = None

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.num_classes)


def load_split(
    store_dir: str | Path, split_dir: str | Path, split: str = "train", labelled_only: bool = True
) -> SplitImages:
    """The images of split ``split`` (labels >= 0 only, unless ``labelled_only`` is False: new
    images scored by ``cxrgen apply`` have label -1); K and image size come from the files."""
    store_dir, split_dir = Path(store_dir), Path(split_dir)
    images_path = array_path(store_dir, IMAGES)
    for path, stage in (
        (images_path, "preprocess"),
        (split_dir / SPLIT_FILE, "split"),
        (split_dir / CLASSES_FILE, "split"),
    ):
        if not path.exists():
            raise DataError(f"missing {path}: run the {stage} stage first")
    images = np.load(images_path, mmap_mode="r")
    if images.ndim != 3:
        raise DataError(f"{images_path} has shape {images.shape}; expected (N, H, W)")
    if images.dtype not in (np.uint8, np.uint16) and images.dtype.kind != "f":
        raise DataError(f"{images_path} has dtype {images.dtype}; expected uint8 or uint16")
    classes = tuple(read_classes(split_dir / CLASSES_FILE))
    table = pd.read_parquet(split_dir / SPLIT_FILE, columns=["row", "label", "split"])
    sub = table[(table["split"] == split) & ((table["label"] >= 0) | (not labelled_only))]
    if sub.empty:
        names = sorted(table["split"].unique())
        raise DataError(f"split '{split}' has no labelled images in {split_dir}; it has {names}")
    rows = sub["row"].to_numpy(np.int64)
    labels = sub["label"].to_numpy(np.int64)
    if rows.min() < 0 or rows.max() >= len(images):
        raise DataError(
            f"split rows exceed the {len(images)} images of {images_path}: re-run split"
        )
    if labels.max() >= len(classes):
        raise DataError(f"labels exceed the {len(classes)} classes of classes.json: re-run split")
    return SplitImages(images_path, rows, labels, classes, *map(int, images.shape[1:]))


class RowView:
    """Rows ``rows`` of a store array, read lazily (``unit``: as float32 in [0, 1]).

    Supports what the metric functions use: ``len``, ``shape``, ``ndim``, ``dtype`` and
    indexing by a slice or an array of positions.
    """

    def __init__(self, array: np.ndarray, rows: np.ndarray, unit: bool = False):
        self.array, self.rows, self.unit = array, np.asarray(rows, dtype=np.int64), unit
        self.shape = (len(self.rows), *array.shape[1:])
        self.ndim = len(self.shape)
        self.dtype = np.dtype(np.float32) if unit else array.dtype

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key) -> np.ndarray:
        values = np.asarray(self.array[self.rows[key]])
        return unit_float(values) if self.unit else values

    def subset(self, positions: np.ndarray) -> RowView:
        """The view of positions ``positions`` of this one."""
        return RowView(self.array, self.rows[positions], self.unit)


@dataclass(frozen=True)
class ImageSet:
    """Images of the store in a fixed order (that of the latents): store rows, labels and ids."""

    store_dir: Path
    classes: tuple[str, ...]
    table: pd.DataFrame  # row, store_row, image_id, patient_id, class_name, label, ...

    def __len__(self) -> int:
        return len(self.table)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(np.load(array_path(self.store_dir, IMAGES), mmap_mode="r").shape[1:])

    def has(self, array: str) -> bool:
        return array_path(self.store_dir, array).exists()

    def view(self, array: str = IMAGES) -> RowView:
        """Store array ``array`` in the set's order; images / healthy as float32 in [0, 1]."""
        store = np.load(array_path(self.store_dir, array), mmap_mode="r")
        return RowView(store, self.table["store_row"].to_numpy(), array in UNIT_ARRAYS)

    def batches(self, batch_size: int):
        """(start, stop) of consecutive batches."""
        for start in range(0, len(self), batch_size):
            yield start, min(start + batch_size, len(self))

    def rows(self, start: int, stop: int, array: str = IMAGES) -> np.ndarray:
        """Store array ``array`` at rows start..stop; images / healthy as float32 in [0, 1]."""
        return self.view(array)[start:stop]


def store_view(images: ImageSet, name: str) -> RowView | None:
    """A store array (``images``, ``healthy``, ``lesion_masks``, ...) in set order, or None."""
    return images.view(name) if images.has(name) else None


def image_set(
    store_dir: Path, split_dir: Path, splits: str | tuple[str, ...], labelled_only: bool = True
) -> ImageSet:
    """Labelled images of ``splits`` (in that order; store-row order within each), with ids;
    with ``labelled_only`` False also the unlabelled ones (label -1, class_name None).

    The labels are carried for scoring only: nothing label-blind computes with them.
    """
    splits = (splits,) if isinstance(splits, str) else tuple(splits)
    ids = pd.read_parquet(Path(split_dir) / SPLIT_FILE, columns=["row", "image_id", "patient_id"])
    ids = ids.set_index("row")
    frames, classes = [], None
    for name in splits:
        data = load_split(store_dir, split_dir, name, labelled_only)
        classes = data.classes
        order = np.argsort(data.rows, kind="stable")
        rows, labels = data.rows[order], data.labels[order]
        frames.append(
            pd.DataFrame(
                {
                    "split": name,
                    "store_row": rows,
                    "image_id": ids.loc[rows, "image_id"].astype(str).to_numpy(),
                    "patient_id": ids.loc[rows, "patient_id"].astype(str).to_numpy(),
                    "class_name": np.array([*data.classes, None], dtype=object)[labels],
                    "label": labels,
                }
            )
        )
    table = pd.concat(frames, ignore_index=True)
    table.insert(0, "row", np.arange(len(table)))
    return ImageSet(Path(store_dir), tuple(classes), table)
