"""Encode presentation images as DICOM files with the transfer syntaxes of a real archive.

A presentation image is float in [0, 1], bright = dense. :class:`Encoding`
maps it to stored integers with the exact inverse of
:func:`cxrgen.data.intensity.to_unit_interval` for its header (bit depth,
MONOCHROME1 inversion, optional Rescale Slope / Intercept and Window Center /
Width), so ``to_unit_interval(ds, ds.pixel_array)`` gives the image back on
the stored grid for lossless syntaxes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
)

from cxrgen.data.intensity import to_unit_interval

SYNTAXES: dict[str, UID] = {
    "explicit": ExplicitVRLittleEndian,
    "implicit": ImplicitVRLittleEndian,
    "rle": RLELossless,
    "jpeg2000": JPEG2000Lossless,
    "jpeg_baseline": JPEGBaseline8Bit,
}
LOSSY_SYNTAXES = frozenset({"jpeg_baseline"})
CR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1")
DX_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1.1")  # Digital X-Ray Image Storage - For Presentation
# windowed files keep their pixel values inside this fraction of the stored range
_WINDOW_SPAN = (0.08, 0.92)


@dataclass(frozen=True)
class Encoding:
    """How one image is stored: transfer syntax, bit depth, photometric, VOI / modality tags."""

    syntax: str
    bits_stored: int
    monochrome1: bool = False
    windowed: bool = False
    rescale: tuple[float, float] | None = None  # (slope, intercept), slope > 0
    jpeg_quality: int = 92

    def __post_init__(self) -> None:
        if self.syntax not in SYNTAXES:
            raise ValueError(f"unknown transfer syntax {self.syntax!r}; expected {list(SYNTAXES)}")
        if self.bits_stored not in (8, 12, 16):
            raise ValueError(f"bits_stored must be 8, 12 or 16, got {self.bits_stored}")
        if self.syntax == "jpeg_baseline" and (
            self.bits_stored != 8 or self.monochrome1 or self.windowed or self.rescale
        ):
            raise ValueError("jpeg_baseline stores plain 8-bit MONOCHROME2 images")

    @property
    def bits_allocated(self) -> int:
        return 8 if self.bits_stored == 8 else 16

    @property
    def photometric(self) -> str:
        return "MONOCHROME1" if self.monochrome1 else "MONOCHROME2"

    @property
    def lossy(self) -> bool:
        return self.syntax in LOSSY_SYNTAXES

    def stored_limits(self) -> tuple[int, int]:
        """Lowest and highest stored value the presentation range [0, 1] maps onto."""
        top = 2**self.bits_stored - 1
        if not self.windowed:
            return 0, top
        return int(round(_WINDOW_SPAN[0] * top)), int(round(_WINDOW_SPAN[1] * top))

    def to_stored(self, unit: np.ndarray) -> np.ndarray:
        """Quantise a [0, 1] presentation image to the stored integers of this encoding."""
        lo, hi = self.stored_limits()
        v = np.clip(unit, 0.0, 1.0)
        if self.monochrome1:
            v = 1.0 - v
        q = lo + np.rint(v * (hi - lo)).astype(np.int64)
        return q.astype(np.uint8 if self.bits_allocated == 8 else np.uint16)


@dataclass(frozen=True)
class HeaderInfo:
    """Identity and acquisition tags of one image (all values fake and deterministic)."""

    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    modality: str  # "CR" or "DX"
    view_position: str  # "PA" or "AP"
    sex: str
    age: int
    pixel_spacing_mm: float
    burned_in_text: bool
    phi: dict[str, str] = field(default_factory=dict)


def header_dataset(info: HeaderInfo, enc: Encoding, rows: int, cols: int) -> Dataset:
    """The complete header (file meta included) of an image, without pixel data."""
    sop_class = DX_STORAGE if info.modality == "DX" else CR_STORAGE
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = info.sop_uid
    ds.file_meta.TransferSyntaxUID = SYNTAXES[enc.syntax]
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"] + ([""] if info.modality == "DX" else [])
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = info.sop_uid
    ds.StudyDate = info.phi.get("StudyDate", "")
    ds.StudyTime = info.phi.get("StudyTime", "")
    ds.AccessionNumber = info.phi.get("AccessionNumber", "")
    ds.Modality = info.modality
    if info.modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = "CXRGEN PHANTOM"
    ds.InstitutionName = info.phi.get("InstitutionName", "")
    ds.ReferringPhysicianName = info.phi.get("ReferringPhysicianName", "")
    ds.StudyDescription = "CHEST"
    ds.SeriesDescription = f"CHEST {info.view_position}"
    ds.PatientName = info.phi.get("PatientName", "")
    ds.PatientID = info.patient_id
    ds.PatientBirthDate = info.phi.get("PatientBirthDate", "")
    ds.PatientSex = info.sex
    ds.OtherPatientIDs = info.phi.get("OtherPatientIDs", "")
    ds.PatientAge = f"{info.age:03d}Y"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = info.view_position
    ds.StudyInstanceUID = info.study_uid
    ds.SeriesInstanceUID = info.series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ["L", "F"]
    ds.BurnedInAnnotation = "YES" if info.burned_in_text else "NO"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = enc.photometric
    ds.Rows = int(rows)
    ds.Columns = int(cols)
    spacing = f"{info.pixel_spacing_mm:.4f}"
    ds.PixelSpacing = [spacing, spacing]
    ds.BitsAllocated = enc.bits_allocated
    ds.BitsStored = enc.bits_stored
    ds.HighBit = enc.bits_stored - 1
    ds.PixelRepresentation = 0
    slope, intercept = enc.rescale if enc.rescale else (1.0, 0.0)
    if enc.rescale:
        ds.RescaleIntercept = _ds(intercept)
        ds.RescaleSlope = _ds(slope)
        ds.RescaleType = "US"
    if enc.windowed:
        lo, hi = enc.stored_limits()
        a, b = lo * slope + intercept, hi * slope + intercept
        # DICOM LINEAR window: [a, b] maps linearly onto the full output range
        ds.WindowCenter = _ds((a + b) / 2 + 0.5)
        ds.WindowWidth = _ds(b - a + 1)
    if info.modality == "DX":
        ds.PresentationLUTShape = "INVERSE" if enc.monochrome1 else "IDENTITY"
    ds.LossyImageCompression = "01" if enc.lossy else "00"
    return ds


def _ds(value: float) -> str:
    """Exact decimal string (VR DS, at most 16 characters) of ``value``."""
    text = repr(float(value))
    text = text[:-2] if text.endswith(".0") else text
    if len(text) > 16 or "e" in text:
        raise ValueError(f"{value!r} has no exact DS representation")
    return text


def decode_unit(header: Dataset, stored: np.ndarray) -> np.ndarray:
    """What the preprocessing normalisation makes of ``stored`` under ``header``."""
    return to_unit_interval(header, stored)


def encode_dicom(header: Dataset, enc: Encoding, stored: np.ndarray) -> bytes:
    """A complete DICOM file (preamble, meta, data set) holding ``stored`` with ``enc``."""
    ds = header.copy()
    ds.file_meta = FileMetaDataset(header.file_meta)
    stored = np.ascontiguousarray(stored)
    if enc.syntax == "jpeg_baseline":
        buf = io.BytesIO()
        Image.fromarray(stored.astype(np.uint8), mode="L").save(
            buf, format="JPEG", quality=enc.jpeg_quality, optimize=False
        )
        frame = buf.getvalue()
        ds.PixelData = encapsulate([frame])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        ds.LossyImageCompressionRatio = f"{stored.nbytes / len(frame):.2f}"
        ds.LossyImageCompressionMethod = "ISO_10918_1"
    else:
        ds.PixelData = stored.tobytes()
        ds["PixelData"].VR = "OB" if enc.bits_allocated == 8 else "OW"
        if enc.syntax in ("rle", "jpeg2000"):
            plugin = "pylibjpeg" if enc.syntax == "jpeg2000" else "pydicom"
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian  # compress() starts native
            ds.compress(SYNTAXES[enc.syntax], encoding_plugin=plugin, generate_instance_uid=False)
    return dataset_bytes(ds)


def dataset_bytes(ds: Dataset) -> bytes:
    """Serialise ``ds`` as a DICOM file (128-byte preamble, DICM, file meta) in memory."""
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
