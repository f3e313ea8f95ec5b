"""Anatomical coordinate frames and the drawing primitives the phantom renderers share.

Anatomy is described in *anatomical units*: ``x`` grows to the image right
(the patient's left), ``y`` grows downward, the chest midline is ``x = 0`` and
the thorax spans roughly ``[-1, 1]`` in both directions. A :class:`Pose`
places those units on a pixel grid; a :class:`Frame` holds the anatomical
coordinates of every pixel of one image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage


@dataclass(frozen=True)
class Pose:
    """Placement of the anatomical frame on an image: centre (pixels), scale, in-plane rotation."""

    cx: float
    cy: float
    scale: float  # pixels per anatomical unit
    angle: float  # radians

    def to_pixels(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Anatomical (x, y) to pixel (row, col)."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        col = self.cx + self.scale * (c * x - s * y)
        row = self.cy + self.scale * (s * x + c * y)
        return row, col


@dataclass(frozen=True)
class Frame:
    """Anatomical coordinates ``X``, ``Y`` of every pixel of an image of ``shape``."""

    shape: tuple[int, int]
    pose: Pose
    X: np.ndarray
    Y: np.ndarray

    @classmethod
    def build(cls, shape: tuple[int, int], pose: Pose) -> Frame:
        rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
        dc = (cols - pose.cx) / pose.scale
        dr = (rows - pose.cy) / pose.scale
        c, s = math.cos(pose.angle), math.sin(pose.angle)
        return cls(shape=tuple(shape), pose=pose, X=c * dc + s * dr, Y=-s * dc + c * dr)

    def px(self, units: float) -> float:
        """A length in anatomical units expressed in pixels."""
        return units * self.pose.scale


@dataclass(frozen=True)
class Stroke:
    """A thick curve: centre-line points (N, 2) in anatomical units, half width, amplitude."""

    points: np.ndarray
    half_width: float
    amplitude: float


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 at ``edge0`` to 1 at ``edge1`` (either order)."""
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def blur(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur in pixels; a no-op below a tenth of a pixel."""
    if sigma_px < 0.1:
        return img.astype(np.float32, copy=False)
    return ndimage.gaussian_filter(img.astype(np.float32, copy=False), sigma_px, truncate=3.0)


def polygon_mask(frame: Frame, points: np.ndarray) -> np.ndarray:
    """Boolean raster of a closed polygon given in anatomical units."""
    rows, cols = frame.pose.to_pixels(points[:, 0], points[:, 1])
    img = Image.new("L", (frame.shape[1], frame.shape[0]), 0)
    ImageDraw.Draw(img).polygon(list(zip(cols.tolist(), rows.tolist(), strict=True)), fill=1)
    return np.asarray(img, dtype=bool)


def ellipse_points(
    cx: float, cy: float, a: float, b: float, angle: float = 0.0, n: int = 64
) -> np.ndarray:
    """Closed ellipse outline (n, 2); ``angle`` rotates the ``a`` axis from +x toward +y."""
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    x, y = a * np.cos(t), b * np.sin(t)
    c, s = math.cos(angle), math.sin(angle)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


def chaikin(points: np.ndarray, iterations: int = 2) -> np.ndarray:
    """Corner-cutting smoothing of a closed polygon."""
    pts = np.asarray(points, dtype=np.float64)
    for _ in range(iterations):
        nxt = np.roll(pts, -1, axis=0)
        q = 0.75 * pts + 0.25 * nxt
        r = 0.25 * pts + 0.75 * nxt
        pts = np.stack([q, r], axis=1).reshape(-1, 2)
    return pts


def bezier(ctrl: np.ndarray, n: int = 48) -> np.ndarray:
    """Points (n, 2) on the Bezier curve with control points ``ctrl`` (k, 2)."""
    ctrl = np.asarray(ctrl, dtype=np.float64)
    k = len(ctrl) - 1
    t = np.linspace(0.0, 1.0, n)[:, None]
    out = np.zeros((n, 2))
    for i, p in enumerate(ctrl):
        out += math.comb(k, i) * (t**i) * ((1 - t) ** (k - i)) * p
    return out


def _resample(frame: Frame, strokes: list[Stroke]) -> tuple[np.ndarray, ...]:
    """Centre-line samples about half a pixel apart: rows, cols and the owning stroke index."""
    pts = np.concatenate([st.points for st in strokes]).astype(np.float64)
    owner = np.repeat(np.arange(len(strokes)), [len(st.points) for st in strokes])
    rows, cols = frame.pose.to_pixels(pts[:, 0], pts[:, 1])
    same = owner[1:] == owner[:-1]
    r0, c0, r1, c1 = rows[:-1][same], cols[:-1][same], rows[1:][same], cols[1:][same]
    seg_owner = owner[:-1][same]
    n = np.maximum(1, np.ceil(np.hypot(r1 - r0, c1 - c0) / 0.5).astype(np.int64))
    idx = np.repeat(np.arange(len(n)), n)
    t = (np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)) / n[idx]
    rr = np.concatenate([r0[idx] + t * (r1 - r0)[idx], rows])
    cc = np.concatenate([c0[idx] + t * (c1 - c0)[idx], cols])
    return (
        np.rint(rr).astype(np.int64),
        np.rint(cc).astype(np.int64),
        np.concatenate([seg_owner[idx], owner]),
    )


def render_strokes(frame: Frame, strokes: list[Stroke], profile: str = "rod") -> np.ndarray:
    """Rasterise thick curves; where they overlap the nearest centre line wins.

    ``profile``: ``"rod"`` (projection of a solid cylinder), ``"bone"`` (a
    cortical tube: bright rim, dimmer core) or ``"flat"``.
    """
    h, w = frame.shape
    if not strokes:
        return np.zeros((h, w), dtype=np.float32)
    r, c, owner = _resample(frame, strokes)
    ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
    if not ok.any():
        return np.zeros((h, w), dtype=np.float32)
    hw_true = np.array([frame.px(st.half_width) for st in strokes], dtype=np.float32)
    hw_px = np.maximum(hw_true, 0.7)
    # thin strokes keep the density of their true width
    amp = np.array([st.amplitude for st in strokes], dtype=np.float32) * np.minimum(
        1.0, hw_true / 0.7
    )
    margin = int(math.ceil(float(hw_px.max()) * 1.2)) + 3
    r0, r1 = max(int(r[ok].min()) - margin, 0), min(int(r[ok].max()) + margin + 1, h)
    c0, c1 = max(int(c[ok].min()) - margin, 0), min(int(c[ok].max()) + margin + 1, w)
    crop = (r1 - r0, c1 - c0)
    seed = np.zeros(crop, dtype=bool)
    hw_img = np.ones(crop, dtype=np.float32)
    amp_img = np.zeros(crop, dtype=np.float32)
    r, c, owner = r[ok] - r0, c[ok] - c0, owner[ok]
    seed[r, c] = True
    hw_img[r, c] = hw_px[owner]
    amp_img[r, c] = amp[owner]
    ir, ic = ndimage.distance_transform_edt(~seed, return_distances=False, return_indices=True)
    rows, cols = np.ogrid[0 : crop[0], 0 : crop[1]]
    u = np.hypot((ir - rows).astype(np.float32), (ic - cols).astype(np.float32)) / hw_img[ir, ic]
    if profile == "rod":
        shape = np.sqrt(np.clip(1.0 - u * u, 0.0, 1.0))
    elif profile == "bone":
        shape = smoothstep(1.15, 0.85, u) * (0.55 + 0.45 * u * u)
    elif profile == "flat":
        shape = smoothstep(1.2, 0.8, u)
    else:
        raise ValueError(f"unknown stroke profile {profile!r}")
    out = np.zeros((h, w), dtype=np.float32)
    out[r0:r1, c0:c1] = blur(amp_img[ir, ic] * shape, 0.6)  # the margin holds the blur
    return out


def _upsample_axis0(grid: np.ndarray, n_out: int, width: float = 0.6) -> np.ndarray:
    """Gaussian-weighted interpolation of a coarse grid along axis 0 to ``n_out`` rows."""
    n_in = grid.shape[0]
    pos = np.linspace(1.0, n_in - 2.0, n_out)
    base = np.floor(pos).astype(np.int64)
    out = np.zeros((n_out, grid.shape[1]), dtype=np.float64)
    total = np.zeros(n_out, dtype=np.float64)
    for d in range(-2, 4):
        j = np.clip(base + d, 0, n_in - 1)
        wt = np.exp(-0.5 * ((pos - (base + d)) / width) ** 2)
        out += wt[:, None] * grid[j]
        total += wt
    return out / total[:, None]


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], corr_px: float) -> np.ndarray:
    """Zero-mean, unit-variance random field with correlation length about ``corr_px`` pixels."""
    h, w = shape
    corr_px = max(float(corr_px), 1.0)
    lh, lw = max(4, int(math.ceil(h / corr_px)) + 3), max(4, int(math.ceil(w / corr_px)) + 3)
    grid = rng.standard_normal((lh, lw))
    field = _upsample_axis0(_upsample_axis0(grid, h).T, w).T
    field -= field.mean()
    return (field / max(float(field.std()), 1e-6)).astype(np.float32)


def sample_grid(grid: np.ndarray, frame: Frame, extent: float) -> np.ndarray:
    """Sample a patient-fixed field covering anatomical ``[-extent, extent]^2`` at every pixel."""
    n0, n1 = grid.shape
    rr = (frame.Y + extent) / (2 * extent) * (n0 - 1)
    cc = (frame.X + extent) / (2 * extent) * (n1 - 1)
    return ndimage.map_coordinates(grid, [rr, cc], order=1, mode="nearest").astype(np.float32)
