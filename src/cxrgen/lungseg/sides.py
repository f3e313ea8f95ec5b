"""Binary lung masks -> right / left lung labels, by connected component and side.

COVID-QU-Ex's lung masks (and the store's ``lung_masks`` of an image-folder data set) are 0/1:
both lungs in one foreground. The segmenter learns the two lungs as separate labels, with the
labels of :mod:`cxrgen.evaluation.severity`: 1 = the patient's RIGHT lung, which a PA
radiograph shows on the IMAGE LEFT, and 2 = the left lung (image right).

:func:`split_sides` splits one mask: the two largest connected components are the lungs, the
one further left in the image (smaller centroid column) the right lung; every other component
goes to the lung whose side of the midpoint between the two centroids it lies on. A mask that
is one component (lungs touching below the heart) is cut at its narrowest column in the
middle third of its width (the mediastinum). Masks that already have label 2 are sided and
kept as they are.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cxrgen.errors import DataError

BACKGROUND, RIGHT, LEFT = 0, 1, 2
LABELS = ("background", "right lung", "left lung")


def is_sided(mask: np.ndarray) -> bool:
    """Whether a mask already tells the lungs apart (has label 2)."""
    return bool((np.asarray(mask) == LEFT).any())


def split_sides(mask: np.ndarray) -> np.ndarray:
    """An (H, W) lung mask -> uint8 labels 0 / 1 (right lung, image left) / 2 (left lung)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise DataError(f"a lung mask is (H, W), got shape {mask.shape}")
    if is_sided(mask):
        if mask.max() > LEFT:
            raise DataError(f"lung mask labels must be 0, 1, 2; got up to {mask.max()}")
        return mask.astype(np.uint8)
    out = np.zeros(mask.shape, np.uint8)
    components, n = ndimage.label(mask > 0, structure=np.ones((3, 3), bool))
    if n == 0:
        return out
    columns = np.arange(mask.shape[1])
    if n == 1:
        cut = _narrowest_column(components > 0)
        out[(components > 0) & (columns < cut)[None, :]] = RIGHT
        out[(components > 0) & (columns >= cut)[None, :]] = LEFT
        return out
    ids = np.arange(1, n + 1)
    sizes = ndimage.sum_labels(np.ones(mask.shape), components, ids)
    centroid_x = np.array([c[1] for c in ndimage.center_of_mass(components > 0, components, ids)])
    a, b = ids[np.argsort(-sizes, kind="stable")[:2]] - 1
    midpoint = (centroid_x[a] + centroid_x[b]) / 2
    side = np.where(centroid_x < midpoint, RIGHT, LEFT).astype(np.uint8)
    lookup = np.concatenate([[BACKGROUND], side]).astype(np.uint8)
    return lookup[components]


def _narrowest_column(foreground: np.ndarray) -> int:
    """The column with the fewest foreground pixels in the middle third of the foreground's
    extent (the middle one of equally narrow columns): the first column of the left lung."""
    profile = foreground.sum(axis=0)
    cols = np.flatnonzero(profile)
    lo, hi = cols[0], cols[-1] + 1
    third = max(1, (hi - lo) // 3)
    start, stop = lo + third, max(lo + third + 1, hi - third)
    middle = profile[start:stop]
    narrowest = np.flatnonzero(middle == middle.min())
    return int(start + narrowest[len(narrowest) // 2])


def split_sides_all(masks, rows: np.ndarray) -> np.ndarray:
    """``split_sides`` of ``masks[rows]`` (a store array, possibly a memory map): (n, H, W)."""
    rows = np.asarray(rows, dtype=np.int64)
    out = np.zeros((len(rows), *masks.shape[1:]), np.uint8)
    for i, row in enumerate(rows):
        out[i] = split_sides(np.asarray(masks[row]))
    return out
