"""Decode one DICOM file to a grey [0, 1] image plus PHI-free metadata, or say why not.

:func:`decode_dicom` reads a file with pydicom (pylibjpeg / pydicom decoders),
takes the first frame, and normalises it with
:func:`cxrgen.data.intensity.to_unit_interval`, the one intensity map of the
project. A file that cannot be used raises :class:`Rejected` with a short
``code`` (see :data:`REASON_CODES`) and a human message; the preprocessing
stage records it in ``rejected.parquet`` and goes on.

Given the size the caller will store (``store_size``, ``aspect``), an 8-bit
grey JPEG Baseline frame is decoded at 1/2, 1/4 or 1/8 of its size where
:mod:`cxrgen.data.jpeg_draft` shows that to be the same pipeline
(``DecodedImage.reduction`` says by how much); every other file, and every
call without ``store_size``, decodes the full frame with pydicom.

Only the whitelisted fields of :class:`DecodedImage` leave this module; no
other header element (PatientName, PatientBirthDate, AccessionNumber,
InstitutionName, ReferringPhysicianName, OtherPatientIDs, dates, UIDs, ...) is
ever copied. ``PatientID`` is kept as the patient grouping key: in the RSNA
Pneumonia Detection set it is already an anonymised UUID. The stage can
replace it with a salted hash (``hash_patient_id``).

Files without the DICOM File Meta header ("DICM" prefix) are rejected as
``not_dicom``; pydicom's ``force`` reading is not attempted because it turns
arbitrary bytes into datasets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import get_decoder, pixel_array

from cxrgen.data import jpeg_draft
from cxrgen.data.intensity import to_unit_interval

#: reason_code -> what it means; every row of ``rejected.parquet`` has one of these codes.
REASON_CODES: dict[str, str] = {
    "not_dicom": "not a DICOM file (no 'DICM' File Meta header)",
    "truncated": "the file ends before its pixel data does",
    "no_pixel_data": "a DICOM file without pixel data (report, DICOMDIR, RT plan, ...)",
    "bad_header": "image pixel module elements missing or invalid",
    "unsupported_transfer_syntax": "no installed decoder for the transfer syntax",
    "colour": "a colour image (not grey) and allow_colour is 'reject'",
    "multiframe": "more than one frame and multiframe is 'reject'",
    "decode_error": "the pixel data could not be decoded",
    "not_image": "not an image file (image-folder input)",
    "unreadable_image": "an image file that could not be read",
    "no_label": "labels were given but this image id has none",
    "excluded_class": "its class is not in the configured classes",
    "no_ground_truth": "ground truth was given but this image has no {image_id}.npz",
    "bad_ground_truth": "the ground-truth file lacks an array or its shape differs",
    "no_mask": "a mask folder exists beside images/ but lacks this image's mask",
    "bad_mask": "the mask could not be read or its shape differs from the image",
}

#: DICOM file name suffixes stripped to form the image id (other names are kept whole).
DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
GREY_PHOTOMETRICS = ("MONOCHROME1", "MONOCHROME2")
COLOUR_MODES = ("reject", "luminance")
#: colour channels closer than this fraction of full scale count as one grey channel.
GREY_TOLERANCE = 2.0 / 255.0
#: Rec. 709 luma weights, as :func:`skimage.color.rgb2gray`.
LUMA_WEIGHTS = np.array([0.2125, 0.7154, 0.0721])
_REQUIRED = ("Rows", "Columns", "BitsAllocated", "BitsStored", "PhotometricInterpretation")
_PIXEL_DATA_TAGS = (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10")


class Rejected(Exception):
    """A file that cannot be stored; ``code`` is one of :data:`REASON_CODES`."""

    def __init__(self, code: str, message: str):
        if code not in REASON_CODES:
            raise ValueError(f"unknown reason code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class DecodedImage:
    """One grey image and the only metadata that leaves the decoder.

    ``image`` is the native grid, or that grid reduced by the integer
    ``reduction`` in both directions (JPEG DCT scaling); ``shape`` is always
    the native (rows, cols).
    """

    image: np.ndarray  # float32 (rows / reduction, cols / reduction) in [0, 1], bright = dense
    patient_id: str | None
    photometric: str
    bits_stored: int
    n_frames: int
    transfer_syntax: str | None  # UID name for DICOM, None for image files
    file_format: str  # "DICOM", "PNG", "JPEG", ...
    reduction: int = 1  # native pixels per image pixel along each axis

    @property
    def shape(self) -> tuple[int, int]:
        """The native grid (rows, cols)."""
        return int(self.image.shape[0]) * self.reduction, int(self.image.shape[1]) * self.reduction


def dicom_image_id(path: str | Path) -> str:
    """Image id of a DICOM file: its name without a .dcm/.dicom/.dic suffix (UID names kept)."""
    name = Path(path).name
    for suffix in DICOM_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def has_dicom_magic(path: str | Path) -> bool:
    """True when the file has the 128-byte preamble followed by 'DICM'."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def grey_from_colour(
    rgb: np.ndarray, allow_colour: str, full_scale: float, what: str
) -> np.ndarray:
    """(rows, cols, 3) -> (rows, cols) float64: equal channels are merged, else luminance or reject.

    Channels within :data:`GREY_TOLERANCE` of full scale of each other are a
    grey image stored as colour (common for PNG/JPEG X-rays) and become their
    mean. Otherwise ``allow_colour="luminance"`` takes Rec. 709 luma and
    ``"reject"`` raises :class:`Rejected` ("colour").
    """
    rgb = np.asarray(rgb, dtype=np.float64)[..., :3]
    spread = float(np.max(rgb.max(axis=-1) - rgb.min(axis=-1))) if rgb.size else 0.0
    if spread <= GREY_TOLERANCE * full_scale:
        return rgb.mean(axis=-1)
    if allow_colour == "luminance":
        return rgb @ LUMA_WEIGHTS
    raise Rejected(
        "colour",
        f"{what} is a colour image (channels differ by up to {spread:g} of {full_scale:g}); "
        "set allow_colour: luminance to convert colour images to grey",
    )


def decode_dicom(
    path: str | Path,
    *,
    multiframe: str = "first",
    allow_colour: str = "reject",
    store_size: int | None = None,
    aspect: str = "pad",
) -> DecodedImage:
    """Read ``path`` and return its first frame normalised to [0, 1]; raise :class:`Rejected`.

    ``store_size`` / ``aspect``: the square the caller will resize the image
    to (:class:`cxrgen.data.geometry.SquareGeometry`). With them, an eligible
    JPEG Baseline frame may come back reduced (see :mod:`cxrgen.data.jpeg_draft`);
    without them (the default) the full frame is always decoded.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise Rejected("not_dicom", "an empty file (0 bytes)")
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError as exc:
        raise Rejected("not_dicom", f"not a DICOM file: {exc}") from None
    except EOFError as exc:
        raise Rejected("truncated", f"the file ends inside the DICOM header: {exc}") from None
    except Exception as exc:  # any parser failure is a per-file rejection
        raise Rejected(
            "bad_header", f"pydicom could not parse the header: {_describe(exc)}"
        ) from None

    if "PixelData" not in ds:
        # pydicom returns an empty dataset when the file ends inside an undefined-length
        # element (encapsulated pixel data); a Pixel Data tag in the bytes tells it apart.
        if (len(ds) == 0 or "Rows" in ds) and any(t in path.read_bytes() for t in _PIXEL_DATA_TAGS):
            raise Rejected("truncated", "the Pixel Data element starts but the file ends first")
        other = [k for k in ("FloatPixelData", "DoubleFloatPixelData") if k in ds]
        extra = f" (it has {', '.join(other)}, which is not supported)" if other else ""
        raise Rejected("no_pixel_data", f"the dataset has no Pixel Data element{extra}")

    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts is None:
        raise Rejected("bad_header", "the File Meta header has no Transfer Syntax UID")
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise Rejected(
            "unsupported_transfer_syntax",
            f"no pixel data decoder exists for transfer syntax {_ts_name(ts)}",
        ) from None
    if not decoder.is_available:
        missing = "; ".join(f"{k}: {', '.join(v)}" for k, v in decoder.missing_dependencies.items())
        raise Rejected(
            "unsupported_transfer_syntax",
            f"transfer syntax {_ts_name(ts)} needs a decoder that is not installed ({missing})",
        )

    absent = [k for k in _REQUIRED if k not in ds or ds[k].value in (None, "")]
    if absent:
        raise Rejected("bad_header", f"missing image pixel module element(s): {', '.join(absent)}")
    try:
        photometric = str(ds.PhotometricInterpretation).strip().upper()
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        bits_stored = int(ds.BitsStored)
        n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError) as exc:
        raise Rejected(
            "bad_header", f"invalid image pixel module value: {_describe(exc)}"
        ) from None

    if photometric == "PALETTE COLOR":
        raise Rejected("colour", "a PALETTE COLOR image: palette images are not supported")
    if samples not in (1, 3) or (samples == 1 and photometric not in GREY_PHOTOMETRICS):
        raise Rejected(
            "colour", f"{samples} sample(s) per pixel with photometric {photometric}: not grey"
        )
    if n_frames > 1 and multiframe == "reject":
        raise Rejected("multiframe", f"{n_frames} frames; set multiframe: first to keep frame 1")

    frame, reduction = None, 1
    if store_size is not None and jpeg_draft.eligible(ds):
        factor = jpeg_draft.draft_factor(int(ds.Rows), int(ds.Columns), store_size, aspect)
        if factor > 1:
            frame = jpeg_draft.decode_reduced(ds, factor, n_frames)
            reduction = factor if frame is not None else 1
    try:
        if frame is None:
            frame = pixel_array(ds, index=0)
    except Exception as exc:  # decoders raise many types; all are per-file
        text = _describe(exc)
        code = (
            "truncated" if "less than expected" in text or "truncated" in text else "decode_error"
        )
        raise Rejected(code, f"{_ts_name(ts)} pixel data could not be decoded: {text}") from None

    try:
        if samples == 3:
            frame = grey_from_colour(frame, allow_colour, 2.0**bits_stored - 1, "the DICOM image")
        if frame.ndim != 2:
            raise ValueError(f"decoded frame has shape {frame.shape}, expected 2-D")
        unit = to_unit_interval(ds, frame)
    except Rejected:
        raise
    except Exception as exc:
        raise Rejected(
            "decode_error", f"intensity normalisation failed: {_describe(exc)}"
        ) from None

    pid = ds.get("PatientID")
    return DecodedImage(
        image=np.ascontiguousarray(unit, dtype=np.float32),
        patient_id=str(pid).strip() if pid not in (None, "") else None,
        photometric=photometric,
        bits_stored=bits_stored,
        n_frames=n_frames,
        transfer_syntax=_ts_name(ts),
        file_format="DICOM",
        reduction=reduction,
    )


def _ts_name(ts) -> str:
    name = getattr(ts, "name", "") or ""
    return name if name and name != str(ts) else f"unknown ({ts})"


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
