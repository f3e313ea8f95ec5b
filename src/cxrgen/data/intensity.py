"""The one intensity normalisation every image goes through.

A decoded DICOM pixel array becomes a float image in [0, 1] with bright
meaning dense (MONOCHROME2 orientation):

1. the Modality LUT (Rescale Slope / Intercept or a Modality LUT Sequence),
2. the first VOI transform (a VOI LUT Sequence if present, else the first
   Window Center / Width), as pydicom applies them,
3. a linear map of the *nominal* output range of those transforms onto
   [0, 1] (the stored bit range mapped through the modality transform, or the
   VOI LUT's output bit range), clipped,
4. inversion for MONOCHROME1.

The range in step 3 depends only on the header, never on the pixel values,
so an image and its exact healthy counterpart (same header, lesion removed)
normalise identically; a per-image min-max or percentile normalisation would
break that correspondence. The phantom generator encodes its images with the
inverse of this map, which the tests check round-trips exactly for lossless
transfer syntaxes.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut


def nominal_stored_range(ds: Dataset) -> tuple[float, float]:
    """Output range of the modality transform for the header's stored bit depth."""
    bits = int(ds.BitsStored)
    if ds.get("ModalityLUTSequence"):
        depth = int(ds.ModalityLUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**depth - 1)
    if int(ds.get("PixelRepresentation", 0)) == 0:
        lo, hi = 0.0, float(2**bits - 1)
    else:
        lo, hi = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    slope = ds.get("RescaleSlope")
    intercept = ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        lo, hi = sorted(
            (lo * float(slope) + float(intercept), hi * float(slope) + float(intercept))
        )
    return lo, hi


def to_unit_interval(ds: Dataset, arr: np.ndarray) -> np.ndarray:
    """Apply modality and VOI transforms, map the nominal range to [0, 1], undo MONOCHROME1.

    ``arr`` is one frame as returned by ``ds.pixel_array``. Returns float32.
    """
    lo, hi = nominal_stored_range(ds)
    out = apply_modality_lut(arr, ds)
    if ds.get("VOILUTSequence"):
        depth = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        out = apply_voi_lut(out, ds, index=0, prefer_lut=True)
        lo, hi = 0.0, float(2**depth - 1)
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        out = apply_voi_lut(out, ds, index=0, prefer_lut=False)
    out = (np.asarray(out, dtype=np.float64) - lo) / max(hi - lo, 1e-12)
    out = np.clip(out, 0.0, 1.0)
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip() == "MONOCHROME1":
        out = 1.0 - out
    return out.astype(np.float32)


def unit_to_stored(unit: np.ndarray, bits_stored: int, monochrome1: bool = False) -> np.ndarray:
    """Inverse of :func:`to_unit_interval` for a header with no rescale and no VOI transform.

    Quantises a [0, 1] MONOCHROME2 image to unsigned ``bits_stored`` integers
    (inverted for MONOCHROME1). ``to_unit_interval`` of the result equals
    ``quantize_unit(unit, bits_stored)`` to float32 precision.
    """
    top = 2**bits_stored - 1
    q = np.rint(np.clip(unit, 0.0, 1.0) * top).astype(np.int64)
    if monochrome1:
        q = top - q
    return q.astype(np.uint8 if bits_stored <= 8 else np.uint16)


def quantize_unit(unit: np.ndarray, bits_stored: int) -> np.ndarray:
    """The [0, 1] image as it reads back after storing with ``bits_stored`` bits (float32)."""
    top = 2**bits_stored - 1
    return (np.rint(np.clip(unit, 0.0, 1.0) * top) / top).astype(np.float32)
