"""Who is imaged and how: patients, their follow-up images, classes, findings and headers.

Each patient has an independent random stream derived from the seed, so a
patient's images do not change when other patients are added or removed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cxrgen.data.classes import NORMAL, NOT_NORMAL
from cxrgen.phantoms.anatomy import PatientAnatomy, sample_anatomy
from cxrgen.phantoms.config import PhantomConfig
from cxrgen.phantoms.dicom_writer import HeaderInfo
from cxrgen.phantoms.findings import sample_devices, sample_findings
from cxrgen.phantoms.identifiers import dicom_uid, patient_phi, study_phi, uuid_string
from cxrgen.phantoms.lesions import LesionSpec, sample_lesion_spec
from cxrgen.phantoms.scene import ImageSetup, follow_up_setup, sample_setup

# the physical field of view across two anatomical units (the thorax), in millimetres
_THORAX_MM = 360.0


@dataclass(frozen=True, eq=False)
class ImagePlan:
    """Everything needed to draw and store one image."""

    image_id: str
    patient_id: str
    visit: int
    anatomy: PatientAnatomy
    setup: ImageSetup
    lesion: LesionSpec | None
    non_opacity_class: str  # the class if no opacity ends up drawn
    modality: str
    sex: str
    age: int
    phi: dict[str, str]


def plan_patient_images(cfg: PhantomConfig) -> list[ImagePlan]:
    """All images of all patients, in generation order."""
    count_rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(0,)))
    plans: list[ImagePlan] = []
    for p in range(cfg.n_patients):
        n_images = 1
        if cfg.max_images_per_patient > 1 and count_rng.random() < cfg.frac_follow_up:
            n_images = int(count_rng.integers(2, cfg.max_images_per_patient + 1))
        rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(1, p)))
        plans += _plan_patient(rng, cfg, n_images)
    return plans


def _plan_patient(rng: np.random.Generator, cfg: PhantomConfig, n_images: int) -> list[ImagePlan]:
    patient_id = uuid_string(rng)
    u = rng.random()
    category = 0 if u < cfg.frac_normal else (1 if u < cfg.frac_normal + cfg.frac_opacity else 2)
    findings: tuple[str, ...] = ()
    if category == 2 or (category == 1 and rng.random() < 0.25):
        findings = sample_findings(rng)
    anatomy = sample_anatomy(rng, findings)
    sex = "F" if anatomy.breast > 0 or rng.random() < 0.3 else "M"
    phi = patient_phi(rng)
    pattern_p = np.asarray(cfg.opacity_pattern_weights, dtype=np.float64)
    pattern_p /= pattern_p.sum()
    modality = "DX" if rng.random() < 0.5 else "CR"
    plans: list[ImagePlan] = []
    setup: ImageSetup | None = None
    for visit in range(n_images):
        shape = tuple(int(v) for v in rng.integers(cfg.min_size, cfg.max_size + 1, size=2))
        devices: tuple[str, ...] = ()
        if "support_devices" in findings:
            devices = sample_devices(rng, 1, 3)
        elif category == 1 and rng.random() < 0.3:
            devices = sample_devices(rng, 1, 2)
        ap_view = bool(rng.random() < cfg.frac_ap)
        if setup is None:
            setup = sample_setup(rng, shape, ap_view, devices)
        else:
            setup = follow_up_setup(rng, setup, shape, devices)
        lesion = None
        if category == 1 and not (visit > 0 and rng.random() < cfg.frac_resolved):
            pattern = cfg.opacity_patterns[int(rng.choice(len(pattern_p), p=pattern_p))]
            lesion = sample_lesion_spec(rng, pattern, cfg.frac_bilateral)
        study = study_phi(rng)
        age = int(study["StudyDate"][:4]) - int(phi["PatientBirthDate"][:4])
        plans.append(
            ImagePlan(
                image_id=uuid_string(rng),
                patient_id=patient_id,
                visit=visit,
                anatomy=anatomy,
                setup=setup,
                lesion=lesion,
                non_opacity_class=NOT_NORMAL if (findings or devices) else NORMAL,
                modality=modality,
                sex=sex,
                age=age,
                phi={**phi, **study},
            )
        )
    return plans


def header_info(plan: ImagePlan, seed: int) -> HeaderInfo:
    """DICOM identity of a planned image; UIDs are hashes of the seed and the image id."""
    h, w = plan.setup.shape
    return HeaderInfo(
        patient_id=plan.patient_id,
        study_uid=dicom_uid("cxrgen-phantom", seed, plan.image_id, "study"),
        series_uid=dicom_uid("cxrgen-phantom", seed, plan.image_id, "series"),
        sop_uid=dicom_uid("cxrgen-phantom", seed, plan.image_id, "instance"),
        modality=plan.modality,
        view_position="AP" if plan.setup.ap_view else "PA",
        sex=plan.sex,
        age=plan.age,
        pixel_spacing_mm=_THORAX_MM / (min(h, w) * plan.setup.zoom),
        burned_in_text=bool(plan.setup.text),
        phi=plan.phi,
    )


def junk_header_info(seed: int, image_id: str, rng: np.random.Generator) -> HeaderInfo:
    """Header identity for a junk file (its own fake patient)."""
    phi = {**patient_phi(rng), **study_phi(rng)}
    return HeaderInfo(
        patient_id=uuid_string(rng),
        study_uid=dicom_uid("cxrgen-phantom", seed, image_id, "study"),
        series_uid=dicom_uid("cxrgen-phantom", seed, image_id, "series"),
        sop_uid=dicom_uid("cxrgen-phantom", seed, image_id, "instance"),
        modality="CR",
        view_position="PA",
        sex="M",
        age=50,
        pixel_spacing_mm=0.5,
        burned_in_text=False,
        phi=phi,
    )
