"""Input folder trees: which files are inputs, DICOM or image files, and image folders.

:func:`scan_inputs` lists the inputs under a folder: every regular file,
sorted by relative path, except hidden files and folders, the paths the
stage is told to skip (label CSVs, ground truth, its own output) and files
with a documentation / table suffix (:data:`SKIPPED_SUFFIXES`). Everything
else is an input and ends stored or rejected: a junk ``.dcm`` is rejected,
never skipped. :func:`detect_format` tells a DICOM tree from an image folder.

PNG / JPEG / TIFF / BMP images are read with Pillow. The intensity map is the
image-file analogue of :func:`cxrgen.data.intensity.to_unit_interval`: the
nominal range of the stored bit depth (0..255 for 8-bit, 0..65535 for
16-bit, 0..1 for bilevel) maps linearly onto [0, 1], never a per-image
min-max. Colour files whose channels agree (grey saved as RGB) become grey;
true colour follows ``allow_colour`` (see :func:`cxrgen.data.dicom.grey_from_colour`).

Folder semantics, for a file at ``<input_dir>/<rel>``:

* class name: the folder that contains ``images/`` when the file sits in an
  ``images`` folder (``Train/COVID-19/images/x.png`` -> ``COVID-19``), else
  the immediate parent folder; none for files at the top level or directly
  inside a split folder.
* ``source_split``: the nearest ancestor folder named train / training,
  val / valid / validation, or test / testing (case-insensitive), reported as
  ``"train"``, ``"val"`` or ``"test"``.
* mask folders: a folder named ``lung masks`` (or ``infection masks``) beside
  an ``images`` folder holds one mask per image with the same file name
  (COVID-QU-Ex). Its files are masks, not inputs. Any non-zero value is
  foreground (1): COVID-QU-Ex lung masks do not tell the right lung from the
  left, so their ``lung_masks.npy`` holds 0/1, unlike the phantom ground
  truth's 0 / 1 right / 2 left.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from cxrgen.data.dicom import (
    DICOM_SUFFIXES,
    DecodedImage,
    Rejected,
    grey_from_colour,
    has_dicom_magic,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
#: files with these suffixes are documentation or tables, never inputs.
SKIPPED_SUFFIXES = frozenset(
    ".csv .tsv .json .txt .md .rst .yaml .yml .log .html .htm .pdf .xml "
    ".py .sh .npy .npz .parquet .pkl".split()
)
IMAGES_FOLDER = "images"
#: mask folder name (lower case) beside ``images/`` -> the store array it fills.
MASK_FOLDERS = {"lung masks": "lung_masks", "infection masks": "lesion_masks"}
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
# Pillow mode -> (numpy dtype to read as, bits of the nominal range)
_GREY_MODES = {"1": 1, "L": 8, "I;16": 16, "I;16L": 16, "I;16B": 16, "I;16N": 16}


@dataclass(frozen=True)
class FolderInfo:
    """What the folder layout says about one image file."""

    class_name: str | None
    source_split: str | None


def scan_inputs(input_dir: Path, skip: Iterable[Path] = ()) -> list[str]:
    """Relative POSIX paths of the input files under ``input_dir``, sorted (see module doc)."""
    skip_set = {Path(p).resolve() for p in skip}
    out = []
    for root, dirs, files in os.walk(input_dir):
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and (Path(root) / d).resolve() not in skip_set
        )
        for name in files:
            path = Path(root) / name
            if name.startswith(".") or path.suffix.lower() in SKIPPED_SUFFIXES:
                continue
            if path.resolve() not in skip_set and path.is_file():
                out.append(path.relative_to(input_dir).as_posix())
    return sorted(out)


def detect_format(input_dir: Path, rels: list[str]) -> str:
    """'images' when image files are present and nothing looks like DICOM, else 'dicom'."""
    if not any(is_image_file(r) for r in rels):
        return "dicom"
    for rel in rels:
        if not is_image_file(rel) and (
            rel.lower().endswith(DICOM_SUFFIXES) or has_dicom_magic(input_dir / rel)
        ):
            return "dicom"
    return "images"


def drop_mask_files(input_dir: Path, rels: list[str]) -> list[str]:
    """``rels`` without the files that sit in a mask folder beside an ``images`` folder."""
    parents = {str(PurePosixPath(r).parent) for r in rels}
    masks = {d for d in parents if mask_kind(input_dir, f"{d}/x") is not None}
    return [r for r in rels if str(PurePosixPath(r).parent) not in masks]


def is_image_file(rel: str | PurePosixPath) -> bool:
    return PurePosixPath(rel).suffix.lower() in IMAGE_SUFFIXES


def folder_info(rel: str | PurePosixPath) -> FolderInfo:
    """Class name and source split of ``rel`` (a path relative to the input folder)."""
    parts = PurePosixPath(rel).parent.parts
    split = None
    for part in reversed(parts):
        if part.lower() in SPLIT_NAMES:
            split = SPLIT_NAMES[part.lower()]
            break
    if parts and parts[-1].lower() == IMAGES_FOLDER:
        class_name = parts[-2] if len(parts) >= 2 else None
    else:
        class_name = parts[-1] if parts else None
    if class_name is not None and class_name.lower() in SPLIT_NAMES:
        class_name = None
    return FolderInfo(class_name=class_name, source_split=split)


def mask_kind(input_dir: Path, rel: str | PurePosixPath) -> str | None:
    """The store array (``"lung_masks"``, ...) a file in a mask folder fills, else None.

    A folder counts as a mask folder only when an ``images`` folder sits beside it.
    """
    parent = PurePosixPath(rel).parent
    kind = MASK_FOLDERS.get(parent.name.lower())
    if kind is None or not _has_images_sibling(input_dir / parent):
        return None
    return kind


def mask_paths(input_dir: Path, rel: str | PurePosixPath) -> dict[str, Path | None]:
    """{store array: mask file or None} for each mask folder beside the image's ``images`` folder.

    Empty when the image is not in an ``images`` folder or no mask folder
    exists there. The mask has the image's file name (any image suffix).
    """
    rel = PurePosixPath(rel)
    folder = input_dir / rel.parent
    if rel.parent.name.lower() != IMAGES_FOLDER or not folder.parent.is_dir():
        return {}
    out: dict[str, Path | None] = {}
    for sibling in sorted(folder.parent.iterdir()):
        kind = MASK_FOLDERS.get(sibling.name.lower())
        if kind is None or not sibling.is_dir():
            continue
        candidates = [sibling / rel.name] + [sibling / (rel.stem + s) for s in IMAGE_SUFFIXES]
        out[kind] = next((c for c in candidates if c.is_file()), None)
    return out


def read_image(
    path: str | Path, *, multiframe: str = "first", allow_colour: str = "reject"
) -> DecodedImage:
    """Read a PNG / JPEG / TIFF / BMP file as a grey [0, 1] image; raise :class:`Rejected`."""
    path = Path(path)
    if not is_image_file(path):
        raise Rejected(
            "not_image", f"not an image file name (expected {', '.join(IMAGE_SUFFIXES)})"
        )
    try:
        with Image.open(path) as img:
            n_frames = int(getattr(img, "n_frames", 1) or 1)
            if n_frames > 1 and multiframe == "reject":
                raise Rejected(
                    "multiframe", f"{n_frames} frames; set multiframe: first to keep frame 1"
                )
            img.seek(0)
            fmt = img.format or path.suffix.lstrip(".").upper()
            unit, photometric, bits = _to_unit(img, allow_colour)
    except Rejected:
        raise
    except Exception as exc:  # any reader failure is a per-file rejection
        raise Rejected(
            "unreadable_image", f"Pillow could not read the image: {_describe(exc)}"
        ) from None
    if unit.ndim != 2 or min(unit.shape) < 1:
        raise Rejected("unreadable_image", f"unexpected image shape {unit.shape}")
    return DecodedImage(
        image=np.ascontiguousarray(unit, dtype=np.float32),
        patient_id=None,
        photometric=photometric,
        bits_stored=bits,
        n_frames=n_frames,
        transfer_syntax=None,
        file_format=fmt,
    )


def read_mask(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Read a mask image as uint8 0/1 (any non-zero value, any channel, is 1)."""
    try:
        with Image.open(path) as img:
            arr = np.asarray(img)
    except Exception as exc:  # a bad mask rejects its image, not the stage
        raise Rejected("bad_mask", f"mask {Path(path).name} unreadable: {_describe(exc)}") from None
    if arr.ndim == 3:
        arr = arr[..., :3].max(axis=-1)
    if arr.shape != tuple(shape):
        raise Rejected("bad_mask", f"mask {Path(path).name} has shape {arr.shape}, image {shape}")
    return (arr > 0).astype(np.uint8)


def _to_unit(img: Image.Image, allow_colour: str) -> tuple[np.ndarray, str, int]:
    mode = img.mode
    if mode in _GREY_MODES:
        bits = _GREY_MODES[mode]
        arr = np.asarray(img)
        return arr.astype(np.float64) / float(2**bits - 1), "MONOCHROME2", bits
    if mode == "LA":
        arr = np.asarray(img)[..., 0]
        return arr.astype(np.float64) / 255.0, "MONOCHROME2", 8
    if mode in ("I", "F"):
        raise Rejected(
            "unreadable_image",
            f"Pillow mode {mode!r} (32-bit) has no nominal grey range; store 8- or 16-bit images",
        )
    rgb = np.asarray(img if mode in ("RGB", "RGBA") else img.convert("RGB"))
    grey = grey_from_colour(rgb, allow_colour, 255.0, f"the {mode} image")
    return grey / 255.0, "RGB", 8


def _has_images_sibling(folder: Path) -> bool:
    parent = folder.parent
    try:
        return any(p.is_dir() and p.name.lower() == IMAGES_FOLDER for p in parent.iterdir())
    except OSError:
        return False


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
