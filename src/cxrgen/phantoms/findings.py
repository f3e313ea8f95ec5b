"""Non-opacity findings, support devices, lead markers and burned-in text.

Chronic findings change a patient's anatomy (see ``sample_anatomy``) or add
hardware that stays on every image of that patient; support devices (lines,
tubes, ECG leads) are drawn per image.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cxrgen.phantoms.anatomy import PatientAnatomy
from cxrgen.phantoms.geometry import Frame, Stroke, bezier, ellipse_points, render_strokes

# findings that make an image "No Lung Opacity / Not Normal"
CHRONIC_FINDINGS = (
    "cardiomegaly",
    "hyperinflation",
    "scoliosis",
    "elevated_hemidiaphragm",
    "sternotomy",
    "pacemaker",
    "support_devices",
)
SUPPORT_DEVICES = ("ecg_leads", "endotracheal_tube", "central_line", "nasogastric_tube")
TEXT_LINES = ("PORTABLE", "AP SUPINE", "PA ERECT", "CHEST 1V", "SITTING", "UPRIGHT", "INSP")


def sample_findings(rng: np.random.Generator, n_max: int = 2) -> tuple[str, ...]:
    """One to ``n_max`` chronic findings, in a canonical order."""
    n = int(rng.integers(1, n_max + 1))
    picked = set(rng.choice(len(CHRONIC_FINDINGS), size=n, replace=False).tolist())
    return tuple(f for i, f in enumerate(CHRONIC_FINDINGS) if i in picked)


def sample_devices(rng: np.random.Generator, n_min: int = 1, n_max: int = 3) -> tuple[str, ...]:
    """A few support devices for one image, in a canonical order."""
    n = int(rng.integers(n_min, n_max + 1))
    picked = set(rng.choice(len(SUPPORT_DEVICES), size=n, replace=False).tolist())
    return tuple(d for i, d in enumerate(SUPPORT_DEVICES) if i in picked)


def render_devices(
    anat: PatientAnatomy, frame: Frame, devices: tuple[str, ...], rng: np.random.Generator
) -> np.ndarray:
    """Attenuation of the patient's hardware (sternotomy wires, pacemaker) and ``devices``."""
    sx = anat.spine_x
    j = rng.normal(0.0, 0.02, size=16)
    carina_y = anat.hilum_y - 0.22
    strokes: list[Stroke] = []
    discs: list[tuple[float, float, float, float]] = []  # x, y, radius, amplitude
    if "sternotomy" in anat.findings:
        for i, y in enumerate(np.linspace(-0.55, 0.12, 6)):
            loop = ellipse_points(sx + 0.01 * j[i], y, 0.035, 0.014, 0.1 * j[i + 6], n=24)
            strokes.append(Stroke(np.vstack([loop, loop[:1]]), 0.007, 1.8))
    if "pacemaker" in anat.findings:
        gx, gy = sx + 0.62 + j[0], -0.66 + j[1]
        discs.append((gx, gy, 0.08, 3.0))
        lead = bezier([(gx - 0.05, gy), (0.3, -0.8), (0.0, -0.35), (-0.05, 0.05), (0.2, 0.26)])
        strokes.append(Stroke(lead, 0.008, 1.6))
    if "ecg_leads" in devices:
        for k, (ex, ey) in enumerate([(-0.72, -0.88), (0.72, -0.88), (-0.66, 0.5), (0.7, 0.5)]):
            x, y = sx + ex + j[k], ey + j[k + 4]
            discs += [(x, y, 0.045, 0.15), (x, y, 0.013, 1.6)]
            out = 1.5 if ex > 0 else -1.5
            strokes.append(
                Stroke(bezier([(x, y), (x + out * 0.3, y + 0.2 * j[k]), (out, y)]), 0.005, 0.9)
            )
    if "endotracheal_tube" in devices:
        tip = carina_y - 0.12 + j[2]
        for off, amp in ((-0.025, 0.45), (0.025, 0.45), (0.018, 1.0)):
            pts = np.array([(sx + off + 0.01, -1.8), (sx + off, -0.9), (sx + off + 0.005, tip)])
            strokes.append(Stroke(pts, 0.006, amp))
    if "central_line" in devices:
        line = bezier([(-0.95, -0.82 + j[3]), (-0.45, -0.78), (-0.12, -0.7), (-0.11, -0.3 + j[5])])
        strokes.append(Stroke(line + [sx, 0.0], 0.008, 1.1))
    if "nasogastric_tube" in devices:
        base = anat.cp_y[1] - anat.dome_h[1]
        ng = bezier(
            [
                (0.0, -1.8),
                (0.02, -0.5),
                (0.06, base + 0.05),
                (0.3, base + 0.2),
                (0.5 + j[4], base + 0.12),
            ]
        )
        strokes.append(Stroke(ng + [sx, 0.0], 0.009, 1.0))
    out = render_strokes(frame, strokes, profile="rod")
    for x, y, r, amp in discs:
        _add_disc(out, frame, x, y, r, amp)
    return out


def _add_disc(out: np.ndarray, frame: Frame, x: float, y: float, r: float, amp: float) -> None:
    """Add a flat-topped disc (a metal button or generator) within its bounding box."""
    row, col = frame.pose.to_pixels(np.asarray(x), np.asarray(y))
    rad = frame.px(r) + 2.0
    r0, r1 = max(int(row - rad), 0), min(int(row + rad) + 2, frame.shape[0])
    c0, c1 = max(int(col - rad), 0), min(int(col + rad) + 2, frame.shape[1])
    if r0 >= r1 or c0 >= c1:
        return
    d = np.hypot(frame.X[r0:r1, c0:c1] - x, frame.Y[r0:r1, c0:c1] - y) / r
    out[r0:r1, c0:c1] += amp * np.clip(1.6 - 1.6 * d, 0.0, 1.0)


@functools.lru_cache(maxsize=64)
def _text_bitmap(text: str, size_px: int, stroke: int) -> np.ndarray:
    font = ImageFont.load_default(size=size_px)
    left, top, right, bottom = font.getbbox(text, stroke_width=stroke)
    img = Image.new("L", (right - left + 2, bottom - top + 2), 0)
    ImageDraw.Draw(img).text(
        (1 - left, 1 - top), text, fill=255, font=font, stroke_width=stroke, stroke_fill=255
    )
    arr = np.asarray(img, dtype=np.float32) / 255.0
    arr.setflags(write=False)
    return arr


def text_layer(
    shape: tuple[int, int],
    text: str,
    row: int,
    col: int,
    size_px: int,
    bold: bool = False,
    box: bool = False,
) -> np.ndarray:
    """A [0, 1] layer of ``shape`` with ``text`` rendered at (row, col) (top-left corner)."""
    out = np.zeros(shape, dtype=np.float32)
    bmp = _text_bitmap(text, max(int(size_px), 6), 1 if bold else 0)
    if box:
        pad = max(1, size_px // 6)
        framed = np.zeros((bmp.shape[0] + 2 * pad, bmp.shape[1] + 2 * pad), dtype=np.float32)
        framed[[0, -1], :] = 1.0
        framed[:, [0, -1]] = 1.0
        framed[pad:-pad, pad:-pad] = bmp
        bmp = framed
    r0, c0 = max(row, 0), max(col, 0)
    r1, c1 = min(row + bmp.shape[0], shape[0]), min(col + bmp.shape[1], shape[1])
    if r1 > r0 and c1 > c0:
        out[r0:r1, c0:c1] = bmp[r0 - row : r1 - row, c0 - col : c1 - col]
    return out


def marker_layer(shape: tuple[int, int], letter: str, box: bool) -> np.ndarray:
    """Lead laterality marker: "L" in the image's upper right, "R" in its upper left."""
    h, w = shape
    size = max(6, int(round(0.075 * min(h, w))))
    margin = max(1, int(round(0.04 * min(h, w))))
    width = int(round(size * 0.75)) + (2 * max(1, size // 6) if box else 0)
    col = w - margin - width if letter == "L" else margin
    return text_layer(shape, letter, margin, col, size, bold=size >= 12, box=box)


def annotation_layer(shape: tuple[int, int], text: str, bottom: bool) -> np.ndarray:
    """Burned-in text line (technologist annotation); empty on images too small to read it."""
    h, w = shape
    size = int(round(0.045 * min(h, w)))
    if size < 7 or not text:
        return np.zeros(shape, dtype=np.float32)
    margin = max(2, int(round(0.03 * min(h, w))))
    row = h - margin - size - 2 if bottom else margin
    col = margin if bottom else int(round(0.2 * w))
    return text_layer(shape, text, row, col, size)
