"""Bones of the chest: ribs, clavicles, spine, scapulae and humeral heads."""

from __future__ import annotations

import functools

import numpy as np

from cxrgen.phantoms.anatomy import PatientAnatomy, body_half_width, spine_x
from cxrgen.phantoms.geometry import (
    Frame,
    Stroke,
    bezier,
    blur,
    polygon_mask,
    render_strokes,
    smoothstep,
)

N_RIBS = 12


def _rib_curves(anat: PatientAnatomy, side: int, k: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Posterior and anterior arcs of rib ``k`` on ``side`` (0 = patient's right) as (x, y)."""
    j = anat.rib_jitter[side, k]
    y0 = anat.rib_top + k * anat.rib_spacing * (1.0 + 0.025 * k) + 0.01 * j[0]
    wall = float(body_half_width(anat, np.asarray(y0 + 0.1))) - 0.05
    w = min(wall, 0.42 + 0.24 * k) + 0.02 * j[1]
    arch = 0.13 + 0.015 * j[2] + (0.04 if k < 2 else 0.0)
    post = bezier([(0.05, y0), (0.35 * w, y0 - arch), (0.9 * w, y0 - arch), (w, y0 + 0.12)])
    ant = None
    if k < N_RIBS - 2:
        drop = 0.34 + 0.02 * k
        ant = bezier(
            [
                (w, y0 + 0.12),
                (1.03 * w, y0 + 0.24),
                (0.75 * w, y0 + drop - 0.05),
                (0.32 + 0.02 * k, y0 + drop + 0.04),
            ]
        )
    sign = -1.0 if side == 0 else 1.0

    def place(c: np.ndarray) -> np.ndarray:
        return np.stack([sign * c[:, 0] + spine_x(anat, c[:, 1]), c[:, 1]], axis=1)

    return place(post), (None if ant is None else place(ant))


@functools.lru_cache(maxsize=8)
def _rib_strokes(anat: PatientAnatomy) -> tuple[tuple[Stroke, ...], tuple[Stroke, ...]]:
    """Posterior and anterior rib arcs of both sides."""
    posterior: list[Stroke] = []
    anterior: list[Stroke] = []
    for side in (0, 1):
        for k in range(N_RIBS):
            post, ant = _rib_curves(anat, side, k)
            posterior.append(Stroke(post, 0.026 if k else 0.022, 1.0 if k < 8 else 0.5))
            if ant is not None:
                anterior.append(Stroke(ant, 0.03, 0.35))
    return tuple(posterior), tuple(anterior)


def render_bones(
    anat: PatientAnatomy, frame: Frame, ap_view: bool, clavicle_shift: float = 0.0
) -> np.ndarray:
    """Bone attenuation (before the bone density scale) of one image."""
    posterior, anterior = _rib_strokes(anat)
    bones = render_strokes(frame, list(posterior), profile="bone")
    bones += render_strokes(frame, list(anterior), profile="rod")
    bones += _clavicles(anat, frame, ap_view, clavicle_shift)
    bones += _spine(anat, frame)
    bones += _scapulae(anat, frame, ap_view)
    if anat.arms:
        bones += _humeri(anat, frame)
    return bones


def _clavicles(anat: PatientAnatomy, frame: Frame, ap_view: bool, shift: float) -> np.ndarray:
    y = anat.clavicle_y - (0.08 if ap_view else 0.0) + shift
    tilt = anat.clavicle_tilt
    strokes = []
    for sign in (-1.0, 1.0):
        c = bezier([(0.07, y + 0.02), (0.35, y + 0.03), (0.6, y - tilt - 0.02), (0.86, y - tilt)])
        c[:, 0] = sign * c[:, 0] + anat.spine_x
        strokes.append(Stroke(c, 0.034, 1.6))
    return render_strokes(frame, strokes, profile="bone")


def _spine(anat: PatientAnatomy, frame: Frame) -> np.ndarray:
    X, Y = frame.X, frame.Y
    hw = 0.075 + 0.02 * smoothstep(-0.9, 0.6, Y)
    u = (X - spine_x(anat, Y)) / hw
    v = np.mod((Y - anat.rib_top) / anat.vert_period, 1.0)
    body = smoothstep(1.15, 0.9, np.abs(u)) * (
        0.55 + 0.45 * smoothstep(0.0, 0.14, v) * smoothstep(1.0, 0.86, v)
    )
    d = np.sqrt(((np.abs(u) - 0.75) / 0.22) ** 2 + ((v - 0.35) / 0.2) ** 2)
    pedicles = np.exp(-(((d - 0.8) / 0.25) ** 2))
    spinous = np.exp(-((u / 0.16) ** 2 + ((v - 0.62) / 0.16) ** 2))
    spine = 1.6 * (0.55 * body + 0.35 * pedicles + 0.25 * spinous) * smoothstep(-1.7, -1.5, Y)
    return blur(spine, 0.6)


def _scapulae(anat: PatientAnatomy, frame: Frame, ap_view: bool) -> np.ndarray:
    lateral = 0.0 if ap_view else 0.22
    out = np.zeros(frame.shape, dtype=np.float32)
    for sign in (-1.0, 1.0):
        pts = np.array([(0.58, -0.84), (0.98, -0.86), (0.96, -0.32), (0.72, -0.2)])
        pts[:, 0] = sign * (pts[:, 0] + lateral) + anat.spine_x
        pts[:, 1] += anat.shoulder_y + 0.84
        out += 0.5 * blur(polygon_mask(frame, pts).astype(np.float32), max(frame.px(0.02), 0.6))
    return out


def _humeri(anat: PatientAnatomy, frame: Frame) -> np.ndarray:
    X, Y = frame.X, frame.Y
    out = np.zeros(frame.shape, dtype=np.float32)
    shafts = []
    for sign in (-1.0, 1.0):
        cx, cy = sign * (anat.shoulder_w + 0.04) + anat.spine_x, anat.shoulder_y + 0.12
        rn = np.hypot(X - cx, Y - cy) / 0.15
        out += 1.2 * smoothstep(1.05, 0.95, rn) * (0.75 + 0.25 * rn**2)
        shafts.append(Stroke(np.array([(cx, cy), (cx + sign * 0.1, 0.9)]), 0.075, 1.2))
    return out + render_strokes(frame, shafts, profile="bone")
