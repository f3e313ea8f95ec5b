"""Lung opacities, their RALO-style severity scores and RSNA-style bounding boxes.

An opacity is a patchy region inside one lung field, drawn as extra density
in the presentation domain: ``image = healthy + (1 - healthy) * alpha`` with
``alpha`` exactly zero outside the lesion mask. Scores are computed from what
was drawn (mask area fraction and mean added brightness per lung), so they
always agree with the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cxrgen.phantoms.geometry import Frame, blur, smooth_noise, smoothstep

PATTERNS = ("patchy", "peripheral", "lobar")
# RALO extent: fraction of the lung covered; 1 below 25 %, ..., 4 from 75 %
EXTENT_EDGES = (0.25, 0.5, 0.75)
# RALO opacity: mean added brightness over the lesion; 1 hazy ... 4 dense consolidation
DENSITY_EDGES = (0.05, 0.10, 0.17)
_EXTENT_BINS = ((0.05, 0.22), (0.28, 0.47), (0.53, 0.72), (0.78, 0.95))
_DENSITY_BINS = ((0.022, 0.042), (0.058, 0.09), (0.112, 0.155), (0.19, 0.27))


@dataclass(frozen=True)
class LesionSpec:
    """What to draw in one image: pattern, target extent fraction and added density per lung.

    Index 0 of each pair is the patient's right lung (image left), 1 the left.
    """

    pattern: str
    extent: tuple[float, float]
    density: tuple[float, float]
    seed: int


def sample_lesion_spec(
    rng: np.random.Generator,
    pattern: str,
    bilateral_prob: float,
    extent_levels: tuple[int, ...] = (1, 2, 3, 4),
    density_levels: tuple[int, ...] = (1, 2, 3, 4),
) -> LesionSpec:
    """Random lesion spec whose RALO levels are drawn uniformly from the given levels."""
    if pattern not in PATTERNS:
        raise ValueError(f"unknown opacity pattern {pattern!r}; expected one of {PATTERNS}")
    sides = [True, True] if rng.random() < bilateral_prob else [False, False]
    if not sides[0]:
        sides[int(rng.random() < 0.45)] = True  # unilateral: the right lung a little more often
    extent, density = [0.0, 0.0], [0.0, 0.0]
    for i in (0, 1):
        if sides[i]:
            lo, hi = _EXTENT_BINS[int(rng.choice(extent_levels)) - 1]
            extent[i] = float(rng.uniform(lo, hi))
            lo, hi = _DENSITY_BINS[int(rng.choice(density_levels)) - 1]
            density[i] = float(rng.uniform(lo, hi))
    return LesionSpec(pattern, tuple(extent), tuple(density), int(rng.integers(2**31)))


def draw_lesions(
    spec: LesionSpec, frame: Frame, lungs: np.ndarray, healthy: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Opacity ``alpha`` (float32, zero outside the mask) and the lesion mask (bool)."""
    rng = np.random.default_rng(spec.seed)
    alpha = np.zeros(frame.shape, dtype=np.float32)
    mask = np.zeros(frame.shape, dtype=bool)
    mid = smooth_noise(rng, frame.shape, frame.px(0.12))
    fine = smooth_noise(rng, frame.shape, frame.px(0.05))
    sigma = frame.px(0.02)
    pad = int(np.ceil(3 * sigma)) + 2
    boxes = ndimage.find_objects(lungs, max_label=2)
    for k in (1, 2):
        target, density = spec.extent[k - 1], spec.density[k - 1]
        if target <= 0 or boxes[k - 1] is None:
            continue
        rs, cs = boxes[k - 1]
        sl = (
            slice(max(rs.start - pad, 0), rs.stop + pad),
            slice(max(cs.start - pad, 0), cs.stop + pad),
        )
        lung = lungs[sl] == k
        if lung.sum() < 4:
            continue
        edge = ndimage.distance_transform_edt(lung)
        field = _prior(
            spec.pattern, frame.X[sl], frame.Y[sl], lung, edge / frame.pose.scale, target, rng
        )
        field = blur(field + _noise_weight(spec.pattern) * (mid[sl] + 0.3 * fine[sl]), sigma)
        values = field[lung]
        thr = float(np.quantile(values, 1.0 - target))
        inside = _drop_specks(lung & (field >= thr))
        if not inside.any():
            continue
        ramp = smoothstep(thr, thr + float(values.std()) + 1e-6, field)
        # a plateau with soft margins, modulated by the field and a fine texture
        margin = smoothstep(0.0, max(2.0, frame.px(0.04)), ndimage.distance_transform_edt(inside))
        taper = np.clip(edge / max(1.5, frame.px(0.02)), 0.35, 1.0)
        texture = np.clip(0.88 + 0.12 * fine[sl], 0.6, 1.2)
        prof = (0.05 + 0.95 * margin) * (0.55 + 0.45 * ramp) * texture * taper
        base = float(np.mean(((1.0 - healthy[sl]) * prof)[inside]))
        amp = min(density / max(base, 1e-6), 0.92 / float(prof[inside].max()))
        alpha[sl][inside] += (amp * prof[inside]).astype(np.float32)
        mask[sl] |= inside
    return alpha, mask


def _drop_specks(mask: np.ndarray) -> np.ndarray:
    """Remove patches much smaller than the largest one (isolated noise peaks)."""
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    keep = np.flatnonzero(sizes >= max(4, 0.15 * sizes.max())) + 1
    return np.isin(labels, keep)


def _noise_weight(pattern: str) -> float:
    return {"patchy": 0.55, "peripheral": 0.45, "lobar": 0.3}[pattern]


def _prior(
    pattern: str,
    X: np.ndarray,
    Y: np.ndarray,
    lung: np.ndarray,
    edge: np.ndarray,
    target: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Where in the lung this pattern tends to sit (larger = more likely opaque).

    ``X``, ``Y`` are anatomical coordinates, ``edge`` the distance to the lung
    border in anatomical units, all on a crop around the lung.
    """
    ys, xs = Y[lung], X[lung]
    z = (Y - ys.min()) / max(float(np.ptp(ys)), 1e-6)  # 0 apex .. 1 base
    lat = np.abs(X - float(np.median(xs)))  # distance from the lung's own centre line
    ax = np.abs(xs)
    lateral = np.clip((np.abs(X) - ax.min()) / max(float(np.ptp(ax)), 1e-6), 0, 1)
    if pattern == "patchy":
        # clusters of overlapping, elongated blobs around one to three seeds
        weights = 0.3 + z[lung]
        idx = rng.choice(len(ys), size=int(rng.integers(1, 4)), p=weights / weights.sum())
        radius = 0.08 + 0.25 * target
        prior = np.zeros(X.shape, dtype=np.float64)
        for i in idx:
            for _ in range(int(rng.integers(2, 6))):
                cx, cy = (
                    xs[i] + rng.normal(0.0, 0.6 * radius),
                    ys[i] + rng.normal(0.0, 0.6 * radius),
                )
                rx, ry = radius * rng.uniform(0.35, 0.9, size=2)
                ang = rng.uniform(0.0, np.pi)
                u = (np.cos(ang) * (X - cx) + np.sin(ang) * (Y - cy)) / rx
                v = (-np.sin(ang) * (X - cx) + np.cos(ang) * (Y - cy)) / ry
                prior = np.maximum(prior, np.exp(-0.5 * (u * u + v * v)))
        return 1.4 * prior
    if pattern == "peripheral":
        return 0.9 * lateral + 0.8 * z + 0.6 * np.exp(-edge / 0.08) - 0.2 * lat
    # lobar: one lobe, bounded by a fissure-like oblique line
    tilt = 0.25 * (lateral - 0.5)
    if rng.random() < 0.5:
        lobe = smoothstep(0.52, 0.38, z + tilt)
    else:
        lobe = smoothstep(0.38, 0.55, z - tilt)
    return 1.6 * lobe


def extent_score(fraction: float) -> int:
    """RALO geographic extent score (0-4) of a covered lung fraction."""
    if fraction <= 0:
        return 0
    return 1 + sum(fraction >= e for e in EXTENT_EDGES)


def density_score(mean_added: float, has_lesion: bool) -> int:
    """RALO opacity score (0-4) of the mean added brightness over a lesion."""
    if not has_lesion:
        return 0
    return 1 + sum(mean_added >= e for e in DENSITY_EDGES)


def ralo_scores(
    image: np.ndarray, healthy: np.ndarray, lesion: np.ndarray, lungs: np.ndarray
) -> dict[str, int]:
    """RALO extent and opacity per lung (right = lungs label 1) and totals, from the drawing."""
    out: dict[str, int] = {}
    diff = image.astype(np.float64) - healthy.astype(np.float64)
    for k, name in ((1, "right"), (2, "left")):
        lung = lungs == k
        les = lesion.astype(bool) & lung
        n = int(les.sum())
        frac = n / max(int(lung.sum()), 1)
        out[f"extent_{name}"] = extent_score(frac)
        out[f"opacity_{name}"] = density_score(float(diff[les].mean()) if n else 0.0, n > 0)
    out["extent_total"] = out["extent_right"] + out["extent_left"]
    out["opacity_total"] = out["opacity_right"] + out["opacity_left"]
    return out


def lesion_boxes(
    lesion: np.ndarray, lungs: np.ndarray, gap_px: int
) -> list[tuple[float, float, float, float]]:
    """RSNA-style boxes (x, y, width, height) covering every lesion pixel, at most two per lung.

    Nearby patches (closer than ``gap_px``) share a box.
    """
    boxes: list[tuple[float, float, float, float]] = []
    for k in (1, 2):
        m = lesion.astype(bool) & (lungs == k)
        if not m.any():
            continue
        grouped = ndimage.binary_dilation(m, iterations=max(1, gap_px))
        labels, n = ndimage.label(grouped)
        if n > 2:
            labels, n = m.astype(np.int32), 1
        for sl in ndimage.find_objects(labels * m):
            if sl is None:
                continue
            rows, cols = sl
            boxes.append(
                (
                    float(cols.start),
                    float(rows.start),
                    float(cols.stop - cols.start),
                    float(rows.stop - rows.start),
                )
            )
    return boxes
