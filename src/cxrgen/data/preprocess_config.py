"""The preprocessing stage's config (config.yaml section ``preprocess``), apart from the
stage (:mod:`cxrgen.data.preprocess`) so that reading it needs no decoder."""

from __future__ import annotations

from dataclasses import dataclass

from cxrgen.config import check
from cxrgen.data.dicom import COLOUR_MODES
from cxrgen.data.geometry import ASPECTS, STORE_DTYPES

_CHOICES = {
    "dtype": tuple(STORE_DTYPES),
    "aspect": ASPECTS,
    "input_format": ("auto", "dicom", "images"),
    "multiframe": ("first", "reject"),
    "allow_colour": COLOUR_MODES,
    "executor": ("process", "thread"),
}


@dataclass(frozen=True)
class PreprocessConfig:
    """Settings of the preprocessing stage (config.yaml section ``preprocess``)."""

    size: int = 64  # stored images are size x size
    dtype: str = "uint16"  # "uint16" | "uint8"
    aspect: str = "pad"  # "pad" (whole image, short side padded with 0) | "crop" (centre)
    input_format: str = "auto"  # "auto" | "dicom" | "images"
    labels_csv: str | None = None  # RSNA stage_2_train_labels.csv
    class_info_csv: str | None = None  # RSNA stage_2_detailed_class_info.csv
    severity_csv: str | None = None  # patientId + labels.SEVERITY_COLUMNS
    # no class labels (the RALO layout): Lung Opacity where a severity score is > 0, else Normal
    classes_from_severity: bool = False
    ground_truth: str | None = None  # folder of {image_id}.npz: healthy, lesion, lungs
    multiframe: str = "first"  # "first" (store frame 1) | "reject"
    allow_colour: str = "reject"  # "reject" | "luminance" (grey-as-RGB is always accepted)
    classes: tuple[str, ...] | None = None  # class order; images of other classes rejected
    allow_unmatched_labels: bool = False  # CSV ids without an input file: error unless true
    hash_patient_id: bool = False  # store sha256(salt, PatientID)[:16] instead
    patient_id_salt: str = ""
    executor: str = "process"  # "process" | "thread"

    def __post_init__(self) -> None:
        check(
            isinstance(self.size, int) and 8 <= self.size <= 4096,
            f"size must be in 8..4096, got {self.size}",
        )
        for key, allowed in _CHOICES.items():
            value = getattr(self, key)
            check(value in allowed, f"{key} must be one of {list(allowed)}, got {value!r}")
        check(
            self.class_info_csv is None or self.labels_csv is not None,
            "class_info_csv needs labels_csv (the RSNA stage_2_train_labels.csv)",
        )
        check(
            not self.classes_from_severity
            or (self.severity_csv is not None and self.labels_csv is None),
            "classes_from_severity needs severity_csv and no labels_csv (the class is read "
            "off the severity scores instead of a labels CSV)",
        )
        check(
            not self.hash_patient_id or bool(self.patient_id_salt),
            "hash_patient_id needs a non-empty patient_id_salt",
        )
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
            check(
                len(self.classes) > 0 and len(set(self.classes)) == len(self.classes),
                f"classes must be non-empty and unique, got {list(self.classes)}",
            )
