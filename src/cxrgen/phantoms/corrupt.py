"""Junk files mixed into a phantom image folder, as a real archive export has them.

Each kind fails differently: a truncated file, a header without pixel data,
a colour (RGB) image, a text file with a ``.dcm`` name and an empty file.
"""

from __future__ import annotations

import numpy as np

from cxrgen.phantoms.dicom_writer import (
    Encoding,
    HeaderInfo,
    dataset_bytes,
    encode_dicom,
    header_dataset,
)

CORRUPT_KINDS = ("truncated", "no_pixel_data", "rgb", "not_dicom", "empty")


def corrupt_file_bytes(kind: str, info: HeaderInfo, rng: np.random.Generator) -> bytes:
    """The bytes of one junk file of ``kind`` (see :data:`CORRUPT_KINDS`)."""
    rows, cols = int(rng.integers(40, 64)), int(rng.integers(40, 64))
    enc = Encoding("explicit", 8)
    pixels = rng.integers(0, 256, size=(rows, cols), dtype=np.uint8)
    if kind == "truncated":
        data = encode_dicom(header_dataset(info, enc, rows, cols), enc, pixels)
        return data[: len(data) - rows * cols // 2]
    if kind == "no_pixel_data":
        return dataset_bytes(header_dataset(info, enc, rows, cols))
    if kind == "rgb":
        ds = header_dataset(info, enc, rows, cols)
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
        rgb = rng.integers(0, 256, size=(rows, cols, 3), dtype=np.uint8)
        return encode_dicom(ds, enc, rgb)
    if kind == "not_dicom":
        return b"This is not a DICOM file: export log of a chest X-ray archive.\n" * 4
    if kind == "empty":
        return b""
    raise ValueError(f"unknown corrupt kind {kind!r}; expected one of {CORRUPT_KINDS}")
