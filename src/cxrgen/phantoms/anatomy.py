"""A patient's healthy chest: body outline, lung fields, heart and mediastinum.

:class:`PatientAnatomy` holds one patient's shape parameters in anatomical
units (see :mod:`cxrgen.phantoms.geometry`); every image of that patient is
drawn from it, so follow-up images share the anatomy and differ only by pose,
exposure and inspiration. Bones live in :mod:`~cxrgen.phantoms.skeleton`,
vessels and hila in :mod:`~cxrgen.phantoms.lung_markings`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cxrgen.phantoms.geometry import (
    Frame,
    Stroke,
    blur,
    chaikin,
    ellipse_points,
    polygon_mask,
    render_strokes,
    smoothstep,
)

# Patient's right lung in side-local coordinates (t = distance from the midline, y down).
# Index 11 is the costophrenic angle, 12-17 the diaphragm dome, 18-19 the medial border.
_LUNG_TEMPLATE = np.array(
    [
        (0.16, -0.55), (0.22, -0.72), (0.31, -0.82), (0.42, -0.86), (0.53, -0.83),
        (0.64, -0.73), (0.73, -0.56), (0.80, -0.33), (0.85, -0.08), (0.88, 0.16),
        (0.90, 0.36), (0.92, 0.52), (0.83, 0.41), (0.69, 0.31), (0.53, 0.26),
        (0.37, 0.27), (0.23, 0.33), (0.10, 0.40), (0.06, 0.05), (0.10, -0.30),
    ]
)  # fmt: skip
_DOME = slice(12, 18)
_TEMPLATE_APEX, _TEMPLATE_CP = -0.86, 0.52
_DOME_DEPTH = (_TEMPLATE_CP - _LUNG_TEMPLATE[_DOME, 1]) / (_TEMPLATE_CP - 0.26)

# Mediastinal silhouette (x, y): patient's right border top-down, then left border bottom-up.
_MEDIASTINUM = np.array(
    [
        (-0.10, -1.6), (-0.11, -0.75), (-0.13, -0.50), (-0.16, -0.30), (-0.18, -0.10),
        (-0.20, 0.15), (0.26, 0.15), (0.23, -0.12), (0.21, -0.21), (0.17, -0.29),
        (0.22, -0.40), (0.19, -0.50), (0.11, -0.58), (0.10, -0.75), (0.09, -1.6),
    ]
)  # fmt: skip


@dataclass(frozen=True, eq=False)
class PatientAnatomy:
    """Shape of one patient's chest in anatomical units (plus patient-fixed random fields)."""

    neck_w: float
    shoulder_w: float
    shoulder_y: float
    torso_w: float
    waist_w: float
    tissue: float  # soft-tissue attenuation scale (body habitus)
    breast: float  # 0 = none
    arms: bool
    lung_w: tuple[float, float]  # (patient right, patient left) lateral scale
    apex_y: float
    cp_y: tuple[float, float]  # costophrenic angle height per side
    dome_h: tuple[float, float]  # dome height above the costophrenic angle per side
    lung_jitter: np.ndarray  # (2, 20, 2)
    heart: tuple[float, float, float, float, float]  # cx, cy, a, b, angle
    med_w: float
    spine_x: float
    scoliosis: float  # lateral amplitude of the spine curve
    scoliosis_phase: float
    vert_period: float
    rib_top: float
    rib_spacing: float
    rib_jitter: np.ndarray  # (2, 12, 3)
    clavicle_y: float
    clavicle_tilt: float
    hilum_y: float
    vessel_seed: int
    texture: np.ndarray  # patient-fixed parenchymal texture grid
    findings: tuple[str, ...]


def sample_anatomy(rng: np.random.Generator, findings: tuple[str, ...] = ()) -> PatientAnatomy:
    """Draw a random healthy patient, modified by chronic ``findings`` (see findings.py)."""
    u = rng.uniform
    torso_w = u(0.9, 1.02)
    lung_w = min(u(0.92, 1.04), (torso_w - 0.08) / 0.92)
    lungs = (lung_w * u(0.97, 1.02), lung_w * u(0.97, 1.02))
    cp = u(0.45, 0.56)
    cp_y = (cp - u(0.0, 0.03), cp + u(0.0, 0.04))  # right hemidiaphragm a little higher
    dome_h = (u(0.2, 0.28), u(0.18, 0.26))
    heart = (u(0.12, 0.17), u(0.27, 0.32), u(0.4, 0.45), u(0.26, 0.3), u(0.12, 0.3))
    scoliosis = 0.0
    if "cardiomegaly" in findings:
        f = u(1.22, 1.4)
        heart = (heart[0] + 0.05, heart[1] + 0.03, heart[2] * f, heart[3] * f, heart[4])
    if "hyperinflation" in findings:
        cp_y = (cp_y[0] + 0.14, cp_y[1] + 0.14)
        dome_h = (dome_h[0] * 0.35, dome_h[1] * 0.35)
        heart = (heart[0] - 0.03, heart[1] + 0.08, heart[2] * 0.85, heart[3] * 0.9, heart[4] + 0.3)
    if "elevated_hemidiaphragm" in findings:
        side = int(rng.integers(2))
        cp_y = tuple(c - 0.15 if i == side else c for i, c in enumerate(cp_y))
    if "scoliosis" in findings:
        scoliosis = u(0.06, 0.12) * rng.choice([-1.0, 1.0])
    grid = ndimage.gaussian_filter(rng.standard_normal((72, 72)), 1.0)
    return PatientAnatomy(
        neck_w=u(0.24, 0.32),
        shoulder_w=u(1.0, 1.15),
        shoulder_y=u(-0.9, -0.78),
        torso_w=torso_w,
        waist_w=torso_w * u(0.9, 1.02),
        tissue=u(0.6, 0.8),
        breast=u(0.12, 0.3) if rng.random() < 0.4 else 0.0,
        arms=bool(rng.random() < 0.6),
        lung_w=lungs,
        apex_y=u(-0.9, -0.82),
        cp_y=cp_y,
        dome_h=dome_h,
        lung_jitter=rng.normal(0.0, 0.012, size=(2, len(_LUNG_TEMPLATE), 2)),
        heart=heart,
        med_w=u(0.9, 1.15),
        spine_x=u(-0.02, 0.02),
        scoliosis=scoliosis,
        scoliosis_phase=u(0.0, 2.0 * math.pi),
        vert_period=u(0.105, 0.125),
        rib_top=u(-0.95, -0.88),
        rib_spacing=u(0.125, 0.145),
        rib_jitter=rng.normal(0.0, 1.0, size=(2, 12, 3)),
        clavicle_y=u(-0.76, -0.68),
        clavicle_tilt=u(0.1, 0.2),
        hilum_y=u(-0.2, -0.1),
        vessel_seed=int(rng.integers(2**31)),
        texture=(grid / grid.std()).astype(np.float32),
        findings=tuple(findings),
    )


def spine_x(anat: PatientAnatomy, y: np.ndarray) -> np.ndarray:
    """Lateral position of the spine centre line at height ``y``."""
    return anat.spine_x + anat.scoliosis * np.sin(2.2 * (y + 1.0) + anat.scoliosis_phase)


def lung_polygon(anat: PatientAnatomy, side: int, inspiration: float = 1.0) -> np.ndarray:
    """Outline (x, y) of one lung; ``side`` 0 = patient's right (image left), 1 = left."""
    pts = _LUNG_TEMPLATE.copy()
    cp = anat.cp_y[side] + (inspiration - 1.0) * 0.8
    frac = (pts[:, 1] - _TEMPLATE_APEX) / (_TEMPLATE_CP - _TEMPLATE_APEX)
    pts[:, 1] = anat.apex_y + frac * (cp - anat.apex_y)
    pts[_DOME, 1] = cp - _DOME_DEPTH * anat.dome_h[side]
    pts = pts + anat.lung_jitter[side]
    x = pts[:, 0] * anat.lung_w[side] * (-1.0 if side == 0 else 1.0)
    return chaikin(np.stack([x + anat.spine_x, pts[:, 1]], axis=1), 2)


def diaphragm_y(anat: PatientAnatomy, x: np.ndarray, inspiration: float = 1.0) -> np.ndarray:
    """Height of the diaphragm (top of the abdomen) below each lung, as a function of ``x``."""
    t_dome = _LUNG_TEMPLATE[_DOME, 0]
    out = np.empty_like(x)
    for side, sel in ((0, x < anat.spine_x), (1, x >= anat.spine_x)):
        t = np.abs(x[sel] - anat.spine_x) / anat.lung_w[side]
        depth = np.interp(t, t_dome[::-1], _DOME_DEPTH[::-1], left=_DOME_DEPTH[-1], right=0.0)
        out[sel] = anat.cp_y[side] + (inspiration - 1.0) * 0.8 - depth * anat.dome_h[side]
    return out


def heart_outline(anat: PatientAnatomy, ap_view: bool) -> tuple[float, float, float, float, float]:
    """Heart ellipse (cx, cy, a, b, angle); an AP projection magnifies it."""
    cx, cy, a, b, ang = anat.heart
    m = 1.1 if ap_view else 1.0
    return cx + anat.spine_x, cy, a * m, b * m, ang


def body_half_width(anat: PatientAnatomy, y: np.ndarray) -> np.ndarray:
    """Half width of the body silhouette at height ``y``: neck, shoulders, torso, waist."""
    sh = smoothstep(anat.shoulder_y - 0.12, anat.shoulder_y + 0.1, y)
    w = anat.neck_w + (anat.shoulder_w - anat.neck_w) * sh
    w = w + (anat.torso_w - anat.shoulder_w) * smoothstep(-0.75, -0.3, y)
    return w + (anat.waist_w - anat.torso_w) * smoothstep(0.3, 1.2, y)


@dataclass(frozen=True, eq=False)
class SoftTissue:
    """Soft-tissue layers of one image: attenuation, lung label map, soft air fraction."""

    attenuation: np.ndarray
    lungs: np.ndarray  # uint8: 0 background, 1 patient's right, 2 patient's left
    air: np.ndarray
    abdomen: np.ndarray  # soft weight of the region below the diaphragm


def render_soft_tissue(
    anat: PatientAnatomy, frame: Frame, inspiration: float, ap_view: bool
) -> SoftTissue:
    """Attenuation of body, lungs (air), heart, mediastinum, breasts and arms on ``frame``."""
    X, Y = frame.X, frame.Y
    w = body_half_width(anat, Y)
    depth = 0.65 + 0.35 * smoothstep(anat.shoulder_y - 0.1, -0.4, Y) + 0.12 * smoothstep(0.2, 1, Y)
    body = np.sqrt(np.clip(1.0 - (X / w) ** 2, 0.0, 1.0)) * depth
    if anat.arms:
        for s in (-1.0, 1.0):
            d = np.abs(X - s * (anat.shoulder_w + 0.15)) / 0.16
            arm = np.sqrt(np.clip(1.0 - d**2, 0.0, 1.0)) * smoothstep(
                anat.shoulder_y - 0.1, -0.6, Y
            )
            body = np.maximum(body, 0.6 * arm)

    hcx, hcy, ha, hb, hang = heart_outline(anat, ap_view)
    heart_poly = polygon_mask(frame, ellipse_points(hcx, hcy, ha, hb, hang))
    med_pts = _MEDIASTINUM * np.array([anat.med_w, 1.0]) + np.array([anat.spine_x, 0.0])
    med_poly = polygon_mask(frame, med_pts)
    cardiomed = heart_poly | med_poly
    right = polygon_mask(frame, lung_polygon(anat, 0, inspiration)) & ~cardiomed
    left = polygon_mask(frame, lung_polygon(anat, 1, inspiration)) & ~cardiomed & ~right
    inside_body = body > 0.05
    lungs = np.where(right & inside_body, 1, np.where(left & inside_body, 2, 0)).astype(np.uint8)

    soft_px = max(frame.px(0.012), 0.6)
    air = blur((lungs > 0).astype(np.float32), soft_px)
    c, s = math.cos(hang), math.sin(hang)
    hu = (c * (X - hcx) + s * (Y - hcy)) / ha
    hv = (-s * (X - hcx) + c * (Y - hcy)) / hb
    heart = blur(heart_poly.astype(np.float32), soft_px) * (
        0.45 + 0.55 * np.sqrt(np.clip(1.0 - hu**2 - hv**2, 0.0, 1.0))
    )
    med = blur(med_poly.astype(np.float32), soft_px * 1.5) * smoothstep(-1.3, -0.9, Y)
    below = smoothstep(-0.01, 0.07, Y - diaphragm_y(anat, X, inspiration)) * (1.0 - air)
    heart = heart * (1.0 - below)
    att = anat.tissue * body * (1.0 - 0.72 * air + 0.18 * below) + 0.42 * heart
    att += 0.35 * med * (1.0 - heart) * (1.0 - below)

    if anat.breast > 0:
        for sx in (-0.48, 0.48):
            r2 = ((X - sx - anat.spine_x) / 0.36) ** 2 + ((Y - 0.28) / 0.26) ** 2
            att += anat.breast * np.sqrt(np.clip(1.0 - r2, 0.0, 1.0)) * smoothstep(0.05, 0.2, Y)
    # gastric air bubble below the left hemidiaphragm (flat air-fluid level at its bottom)
    gx = anat.spine_x + 0.45
    gy = float(diaphragm_y(anat, np.array([gx]), inspiration)[0]) + 0.04
    r2 = ((X - gx) / 0.13) ** 2 + ((Y - gy) / 0.07) ** 2
    att -= 0.18 * smoothstep(1.0, 0.5, r2) * smoothstep(gy + 0.03, gy + 0.01, Y) * body
    att -= 0.2 * _airway(anat, frame) * body
    return SoftTissue(attenuation=att.astype(np.float32), lungs=lungs, air=air, abdomen=below)


def _airway(anat: PatientAnatomy, frame: Frame) -> np.ndarray:
    """Trachea and main bronchi (air columns in the mediastinum)."""
    sx = anat.spine_x
    carina = (sx + 0.01, anat.hilum_y - 0.22)
    trachea = np.array([(sx - 0.01, -1.6), (sx, -0.9), carina])
    right = np.array([carina, (sx - 0.09, anat.hilum_y - 0.12), (sx - 0.17, anat.hilum_y - 0.04)])
    left = np.array([carina, (sx + 0.1, anat.hilum_y - 0.16), (sx + 0.19, anat.hilum_y - 0.07)])
    return render_strokes(
        frame,
        [Stroke(trachea, 0.04, 1.0), Stroke(right, 0.025, 0.8), Stroke(left, 0.025, 0.8)],
        profile="flat",
    )
