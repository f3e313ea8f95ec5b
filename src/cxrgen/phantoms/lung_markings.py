"""Lung markings: the branching pulmonary vessels, the hila and parenchymal texture."""

from __future__ import annotations

import functools

import numpy as np

from cxrgen.phantoms.anatomy import PatientAnatomy
from cxrgen.phantoms.geometry import Frame, Stroke, render_strokes, sample_grid

# directions of the main vessel trunks from the hilum (radians; 0 = lateral, + = downward)
_TRUNKS = (-1.25, -0.6, 0.05, 0.7, 1.2, 1.6)
_DEPTH = 4


@functools.lru_cache(maxsize=8)
def vessel_strokes(anat: PatientAnatomy) -> tuple[Stroke, ...]:
    """The patient's vessel trees (both lungs) as strokes in anatomical units."""
    rng = np.random.default_rng(anat.vessel_seed)
    strokes: list[Stroke] = []
    for side in (0, 1):
        sign = -1.0 if side == 0 else 1.0
        trunks = np.asarray(_TRUNKS)
        start = np.tile([anat.spine_x + sign * 0.2, anat.hilum_y], (len(trunks), 1))
        angle = trunks + rng.normal(0.0, 0.1, size=len(trunks))
        length = np.where(trunks < 0, 0.2, 0.24)
        hw = 0.013
        for _depth in range(_DEPTH + 1):
            direction = np.stack([sign * np.cos(angle), np.sin(angle)], axis=1)
            normal = np.stack([-direction[:, 1], direction[:, 0]], axis=1)
            end = start + length[:, None] * direction
            bend = rng.normal(0.0, 0.12, size=len(angle)) * length
            mid = 0.5 * (start + end) + normal * bend[:, None]
            strokes += [
                Stroke(np.stack([a, m, b]), hw, hw / 0.013)
                for a, m, b in zip(start, mid, end, strict=True)
            ]
            turn = rng.uniform(0.22, 0.5, size=(len(angle), 2)) * np.array([-1.0, 1.0])
            angle = (angle[:, None] + turn).ravel()
            length = np.repeat(length, 2) * rng.uniform(0.62, 0.8, size=2 * len(length))
            start = np.repeat(end, 2, axis=0)
            hw *= 0.72
    return tuple(strokes)


def render_lung_markings(anat: PatientAnatomy, frame: Frame, air: np.ndarray) -> np.ndarray:
    """Attenuation of vessels, hila and texture, visible where the lung holds air."""
    vessels = render_strokes(frame, list(vessel_strokes(anat)), profile="rod")
    X, Y = frame.X, frame.Y
    hila = np.zeros(frame.shape, dtype=np.float32)
    for sign in (-1.0, 1.0):
        r2 = ((X - anat.spine_x - sign * 0.22) / 0.07) ** 2 + ((Y - anat.hilum_y) / 0.1) ** 2
        hila += np.exp(-r2)
    texture = sample_grid(anat.texture, frame, 1.6)
    return (0.2 * vessels + 0.15 * hila + 0.03 * texture) * air
