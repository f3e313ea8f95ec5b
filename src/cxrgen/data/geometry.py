"""Square geometry of the tensor store: pad or centre-crop to a square, then resize.

Every array stored for one image (the image, its healthy counterpart, its
masks) and every box drawn on it goes through the same
:class:`SquareGeometry`, built from the image's native shape, so pixels,
masks and boxes stay aligned:

* ``aspect="pad"`` keeps the whole image: the short side is padded with 0
  (equally on both sides, the odd pixel after) to a ``max(rows, cols)``
  square.
* ``aspect="crop"`` keeps the centre ``min(rows, cols)`` square (the odd
  pixel is dropped after).

The square is then resized to ``size x size`` with
:func:`skimage.transform.resize` (bilinear with Gaussian anti-aliasing for
images; nearest neighbour without anti-aliasing for label masks). Box
coordinates are continuous pixel-edge coordinates (x to the right, y down,
the top-left corner of the top-left pixel at 0), the convention both the
RSNA boxes and ``skimage.transform.resize`` use, so a box maps by a shift and
one scale factor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.transform import resize

from cxrgen.config import check

ASPECTS = ("pad", "crop")
STORE_DTYPES = {"uint16": np.uint16, "uint8": np.uint8}


@dataclass(frozen=True)
class SquareGeometry:
    """The native-grid -> stored-grid transform of one image."""

    rows: int
    cols: int
    size: int
    aspect: str = "pad"

    def __post_init__(self) -> None:
        check(self.aspect in ASPECTS, f"aspect must be one of {ASPECTS}, got {self.aspect!r}")
        check(self.rows > 0 and self.cols > 0, f"image shape must be positive: {self.shape}")
        check(self.size > 0, f"size must be positive, got {self.size}")

    @classmethod
    def for_shape(cls, shape: tuple[int, ...], size: int, aspect: str = "pad") -> SquareGeometry:
        return cls(int(shape[0]), int(shape[1]), int(size), aspect)

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows, self.cols

    @property
    def side(self) -> int:
        """Side of the intermediate square on the native grid."""
        if self.aspect == "pad":
            return max(self.rows, self.cols)
        return min(self.rows, self.cols)

    @property
    def offset(self) -> tuple[int, int]:
        """(dy, dx) added to native coordinates to get square coordinates (negative for crop)."""
        if self.aspect == "pad":
            return (self.side - self.rows) // 2, (self.side - self.cols) // 2
        return -((self.rows - self.side) // 2), -((self.cols - self.side) // 2)

    @property
    def scale(self) -> float:
        """Stored pixels per native pixel."""
        return self.size / self.side

    def square(self, image: np.ndarray, fill: float = 0) -> np.ndarray:
        """Pad (with ``fill``) or centre-crop a native-grid 2-D array to the square."""
        if image.shape[:2] != self.shape:
            raise ValueError(f"array shape {image.shape[:2]} does not match geometry {self.shape}")
        dy, dx = self.offset
        side = self.side
        if self.aspect == "crop":
            return image[-dy : -dy + side, -dx : -dx + side]
        out = np.full((side, side), fill, dtype=image.dtype)
        out[dy : dy + self.rows, dx : dx + self.cols] = image
        return out

    def apply(self, image: np.ndarray, anti_aliasing_sigma: float | None = None) -> np.ndarray:
        """Intensity image (float, [0, 1]) -> ``size x size`` float32, anti-aliased bilinear.

        ``anti_aliasing_sigma``: the Gaussian's sigma in input pixels (0 = none); None =
        scikit-image's own when shrinking (what the full decode uses)."""
        sq = self.square(np.asarray(image, dtype=np.float32), fill=0.0)
        if self.side == self.size:
            return np.ascontiguousarray(sq)
        sigma = anti_aliasing_sigma
        out = resize(
            sq,
            (self.size, self.size),
            order=1,
            anti_aliasing=self.size < self.side if sigma is None else sigma > 0,
            anti_aliasing_sigma=sigma if sigma else None,
            preserve_range=True,
            mode="edge",
        )
        return out.astype(np.float32, copy=False)

    def apply_labels(self, labels: np.ndarray) -> np.ndarray:
        """Integer label mask -> ``size x size`` uint8, nearest neighbour, no anti-aliasing."""
        sq = self.square(np.asarray(labels, dtype=np.uint8), fill=0)
        if self.side == self.size:
            return np.ascontiguousarray(sq)
        out = resize(
            sq,
            (self.size, self.size),
            order=0,
            anti_aliasing=False,
            preserve_range=True,
            mode="edge",
        )
        return np.rint(out).astype(np.uint8)

    def map_boxes(self, boxes: np.ndarray) -> np.ndarray:
        """Native ``[x, y, w, h]`` boxes -> stored-grid boxes (float64, shape (m, 4)).

        Boxes are clipped to the stored image; boxes left with no area (cropped
        away) are dropped, so ``m <= n``.
        """
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        dy, dx = self.offset
        s = self.scale
        x0 = np.clip((boxes[:, 0] + dx) * s, 0.0, self.size)
        y0 = np.clip((boxes[:, 1] + dy) * s, 0.0, self.size)
        x1 = np.clip((boxes[:, 0] + boxes[:, 2] + dx) * s, 0.0, self.size)
        y1 = np.clip((boxes[:, 1] + boxes[:, 3] + dy) * s, 0.0, self.size)
        out = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)
        return out[(out[:, 2] > 0) & (out[:, 3] > 0)]


def quantize(unit: np.ndarray, dtype: str) -> np.ndarray:
    """[0, 1] float image -> the store dtype's full range (x * 65535 or x * 255, rounded)."""
    np_dtype = STORE_DTYPES[dtype]
    top = float(np.iinfo(np_dtype).max)
    return np.rint(np.clip(unit, 0.0, 1.0) * top).astype(np_dtype)


def dequantize(stored: np.ndarray) -> np.ndarray:
    """Stored uint8 / uint16 image -> float32 in [0, 1] (the inverse of :func:`quantize`)."""
    return (np.asarray(stored, dtype=np.float32) / float(np.iinfo(stored.dtype).max)).astype(
        np.float32
    )
