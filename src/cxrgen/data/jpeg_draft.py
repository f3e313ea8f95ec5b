"""JPEG Baseline DICOM frames decoded at 1/2, 1/4 or 1/8 of their size (libjpeg DCT scaling).

libjpeg can decode a baseline JPEG straight to a reduced grid by running a
smaller inverse DCT on each 8x8 block (Pillow's ``Image.draft``): the entropy
decoding is the same, but the inverse transform, the sample output and,
above all, the anti-aliased resize of the full-size image that follows are
mostly skipped. Each reduced pixel is the low-pass (anti-aliased) value of
the ``f x f`` native pixels it covers, so the reduced image stands in for
the native one wherever the stage would shrink it by much more than ``f``.

:func:`decode_reduced` is used only where the result is the same pipeline:

* transfer syntax JPEG Baseline (1.2.840.10008.1.2.4.50), one sample per
  pixel, MONOCHROME1 / MONOCHROME2, 8 bits allocated and stored, unsigned,
  the first frame (the only one the stage stores);
* no Modality LUT Sequence, VOI LUT Sequence or Window Center / Width: the
  remaining intensity map (:func:`cxrgen.data.intensity.to_unit_interval`:
  Rescale Slope / Intercept, the nominal range onto [0, 1], MONOCHROME1
  inversion) is affine and never clips 8-bit values, so it commutes with
  the averaging and is applied to the reduced frame as it is;
* the reduced grid maps exactly onto the native one (:func:`draft_factor`):
  rows and columns divisible by ``f`` and the pad / crop offsets of the
  square too, so boxes and masks keep their native geometry;
* at least :data:`MIN_RESIZE_FACTOR` reduced pixels per stored pixel remain,
  so a real resize finishes the job (:func:`resize_reduced`: the same square
  and bilinear resize as :meth:`SquareGeometry.apply`, its Gaussian
  anti-aliasing sigma chosen by :func:`matched_sigma` so that the DCT
  averaging plus the resize blur as much as the full path's resize alone).
  The Gaussian also smooths over the blockwise DCT filter (no overlap across
  8x8 blocks).

Difference to the full decode + resize path, in grey levels of 255
(BENCHMARKS.md, tests/test_dicom_decoding.py): on the benchmark's noisy
1024 px images stored at 256 (1/2 DCT scale) at most 2.8 at any pixel, 0.40
on average; at a hard edge of about 150 grey levels up to 7 (1/2) and 4
(1/4, 1/8). With skimage's own sigma for the remaining factor (less blur)
the mean difference at 1/4 and 1/8 was 1.5x (noisy images) to 10x (hard
edges) larger; taking the reduction all the way (1/4 for 1024 -> 256, no
resize after it) doubled it on the benchmark images (max 4.1, mean 0.78).

Anything else, and any frame Pillow does not read as an 8-bit grey JPEG of
the header's size, returns None and the caller takes the full decode.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.uid import JPEGBaseline8Bit

from cxrgen.data.geometry import SquareGeometry

#: libjpeg's DCT reductions, largest first.
SCALES = (8, 4, 2)
#: reduced pixels per stored pixel left to the configured resize (at least).
MIN_RESIZE_FACTOR = 2
#: header elements whose intensity transform is not affine (or not applied pointwise).
NONLINEAR_TRANSFORMS = ("ModalityLUTSequence", "VOILUTSequence", "WindowCenter", "WindowWidth")


def draft_factor(rows: int, cols: int, size: int, aspect: str) -> int:
    """Largest of :data:`SCALES` whose reduced grid maps exactly onto the native one, else 1.

    ``f`` qualifies when ``rows`` and ``cols`` are multiples of ``f``, the
    pad / crop offsets of the reduced square times ``f`` are the native ones,
    and the reduced square's side is at least ``MIN_RESIZE_FACTOR * size``.
    """
    native = SquareGeometry(rows, cols, size, aspect)
    for f in SCALES:
        if rows % f or cols % f:
            continue
        reduced = SquareGeometry(rows // f, cols // f, size, aspect)
        if reduced.side < MIN_RESIZE_FACTOR * size:
            continue
        if tuple(o * f for o in reduced.offset) == native.offset:
            return f
    return 1


def eligible(ds: Dataset) -> bool:
    """True for an 8-bit grey JPEG Baseline data set with an affine intensity map."""
    meta = getattr(ds, "file_meta", None)
    if meta is None or meta.get("TransferSyntaxUID") != JPEGBaseline8Bit:
        return False
    try:
        grey = (
            int(ds.get("SamplesPerPixel", 1) or 1) == 1
            and str(ds.PhotometricInterpretation).strip().upper() in ("MONOCHROME1", "MONOCHROME2")
            and int(ds.BitsAllocated) == 8
            and int(ds.BitsStored) == 8
            and int(ds.get("PixelRepresentation", 0) or 0) == 0
        )
    except (AttributeError, TypeError, ValueError):
        return False
    return grey and not any(k in ds for k in NONLINEAR_TRANSFORMS)


def decode_reduced(ds: Dataset, factor: int, n_frames: int = 1) -> np.ndarray | None:
    """Frame 1 of ``ds`` decoded at ``1 / factor`` of its size (uint8), or None.

    None when the data set is not :func:`eligible`, the factor does not divide
    the header's Rows / Columns, or Pillow does not read the frame as an 8-bit
    grey JPEG of the header's size at exactly that reduction (a broken stream
    included: the caller's full decode then reports it).
    """
    if factor not in SCALES or not eligible(ds):
        return None
    rows, cols = int(ds.Rows), int(ds.Columns)
    if rows % factor or cols % factor:
        return None
    want = (cols // factor, rows // factor)
    try:
        data = get_frame(ds.PixelData, 0, number_of_frames=n_frames)
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as img:
            if img.mode != "L" or img.size != (cols, rows):
                return None
            img.draft("L", want)
            if img.mode != "L" or img.size != want:
                return None
            arr = np.asarray(img)
    except Exception:  # a stream Pillow cannot read goes the full decode's way
        return None
    if arr.dtype != np.uint8 or arr.shape != (want[1], want[0]):
        return None
    return arr


def _interpolation_variance(factor: float, size: int) -> float:
    """Mean variance (in input pixels^2) of the bilinear taps of a ``factor``-fold reduction."""
    t = np.mod((np.arange(size) + 0.5) * factor - 0.5, 1.0)
    return float(np.mean(t * (1.0 - t)))


def matched_sigma(side: int, size: int, factor: int) -> float:
    """Anti-aliasing sigma (reduced pixels) that makes the reduced path blur like the full one.

    The full path (:meth:`SquareGeometry.apply`) smooths the native square
    with skimage's Gaussian, sigma ``(F - 1) / 2`` for ``F = side / size``,
    then samples it bilinearly. The reduced path has already averaged over
    ``factor`` native pixels (variance about ``(factor**2 - 1) / 12``, a box)
    and samples the reduced grid bilinearly (taps ``factor`` times wider), so
    its Gaussian gets whatever variance is left for the two totals to agree.
    """
    full = side / size
    rest = full / factor
    var = (
        max(0.0, (full - 1.0) / 2.0) ** 2
        + _interpolation_variance(full, size)
        - (factor**2 - 1) / 12.0
        - factor**2 * _interpolation_variance(rest, size)
    )
    return float(np.sqrt(max(var, 0.0))) / factor


def resize_reduced(image: np.ndarray, size: int, aspect: str, factor: int) -> np.ndarray:
    """A ``factor``-reduced image -> ``size x size`` float32, blurred as the full path would be.

    :meth:`SquareGeometry.apply` (the same square and bilinear, edge-mode resize) with the
    Gaussian of :func:`matched_sigma`; ``factor`` 1 (a full decode) is the plain full path.
    """
    geom = SquareGeometry.for_shape(image.shape, size, aspect)
    if factor == 1:
        return geom.apply(image)
    return geom.apply(image, matched_sigma(geom.side * factor, size, factor))
