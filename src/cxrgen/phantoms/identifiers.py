"""Deterministic identifiers and fake protected health information (PHI) for phantom headers.

Everything here is derived from seeded random generators or hashes of the
seed, never from the clock, so the same seed gives byte-identical files.
"""

from __future__ import annotations

import hashlib
import uuid

import numpy as np

_GIVEN = (
    "ALEX", "SAM", "ROBIN", "KIM", "JORDAN", "CASEY", "MORGAN", "TAYLOR", "JAMIE", "RILEY",
    "AVERY", "QUINN", "DREW", "SKYLER", "PAT", "LEE",
)  # fmt: skip
_INSTITUTIONS = (
    "PHANTOM GENERAL HOSPITAL",
    "SYNTHETIC CITY MEDICAL CENTER",
    "NOWHERE COUNTY CLINIC",
    "FICTIONAL UNIVERSITY HOSPITAL",
)
_DOCTORS = ("FAKE^DOC", "PRETEND^PHYSICIAN", "NOBODY^REFERRER", "MADEUP^MD")


def uuid_string(rng: np.random.Generator) -> str:
    """A random (version 4 layout) UUID string drawn from ``rng``."""
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def dicom_uid(*parts: object) -> str:
    """A valid DICOM UID under the UUID-derived root ``2.25`` from a hash of ``parts``."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode("utf-8")).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def _code(rng: np.random.Generator, n: int) -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "".join(alphabet[i] for i in rng.integers(0, len(alphabet), size=n))


def _date(rng: np.random.Generator, first_year: int, last_year: int) -> str:
    year = int(rng.integers(first_year, last_year + 1))
    return f"{year:04d}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}"


def patient_phi(rng: np.random.Generator) -> dict[str, str]:
    """Fake, realistic-looking patient-level PHI (the same on every image of a patient)."""
    return {
        "PatientName": f"PHANTOM^{rng.choice(_GIVEN)}{_code(rng, 4)}",
        "PatientBirthDate": _date(rng, 1935, 2004),
        "OtherPatientIDs": f"MRN{int(rng.integers(10**7, 10**8))}",
        "InstitutionName": f"{rng.choice(_INSTITUTIONS)} {_code(rng, 3)}",
    }


def study_phi(rng: np.random.Generator) -> dict[str, str]:
    """Fake per-study PHI: accession number, referring physician, study date and time."""
    return {
        "AccessionNumber": f"ACC{_code(rng, 8)}",
        "ReferringPhysicianName": f"{rng.choice(_DOCTORS)}^{_code(rng, 3)}",
        "StudyDate": _date(rng, 2012, 2019),
        "StudyTime": f"{int(rng.integers(7, 20)):02d}{int(rng.integers(0, 60)):02d}00",
    }


# header values a de-identifying pipeline must never copy into its outputs
PHI_KEYS = (
    "PatientName",
    "PatientBirthDate",
    "OtherPatientIDs",
    "InstitutionName",
    "AccessionNumber",
    "ReferringPhysicianName",
)
