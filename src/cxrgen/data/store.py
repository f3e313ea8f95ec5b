"""The tensor store's files: index / rejected table schemas and their atomic writers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cxrgen import io

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
