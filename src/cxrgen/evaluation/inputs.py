"""What the evaluation reads besides the store (:func:`cxrgen.data.store.store_view`): the
counterfactual settings and their anomaly maps.

* :class:`Setting` / :func:`load_settings`: one counterfactual folder (method, scale, scores,
  memory-mapped arrays), checked to come from the same inversion;
* :class:`SmoothedView` / :func:`pixel_map_views`: the anomaly maps of the pixel-level
  metrics (:data:`PIXEL_MAPS`), Gaussian-smoothed on access.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter

from cxrgen.data.store import ImageSet
from cxrgen.errors import DataError

# Anomaly maps of the pixel-level metrics -> (counterfactual array, positive part only):
# the paper's |original - counterfactual|, and the intensity the counterfactual removed
# (opacities are bright, so removing one darkens the image; a change of the other sign is not
# a removed lesion).
PIXEL_MAPS = {"abs": ("absdiff", False), "removed": ("diff", True)}


class SmoothedView:
    """Anomaly maps smoothed with a Gaussian of ``sigma`` pixels on access (0: unchanged).

    scipy.ndimage.gaussian_filter over the two image axes only; reads like a (N, H, W) array.
    ``positive_part``: clip the values at 0 first (the 'removed' map from the signed diff).
    """

    def __init__(self, maps: np.ndarray, sigma: float, positive_part: bool = False):
        self.maps, self.sigma, self.positive_part = maps, float(sigma), positive_part
        self.shape, self.ndim, self.dtype = maps.shape, maps.ndim, np.dtype(np.float32)

    def __len__(self) -> int:
        return len(self.maps)

    def __getitem__(self, key) -> np.ndarray:
        values = np.asarray(self.maps[key], dtype=np.float32)
        if self.positive_part:
            values = np.maximum(values, 0)
        if not self.sigma:
            return values
        sigma = (0,) * (values.ndim - 2) + (self.sigma, self.sigma)
        return gaussian_filter(values, sigma, mode="nearest")


@dataclass(frozen=True)
class Setting:
    """One method and scale: its folder, scores and arrays (memory-mapped)."""

    method: str
    scale: float
    folder: Path
    scores: pd.DataFrame

    def array(self, name: str) -> np.ndarray:
        return np.load(self.folder / f"{name}.npy", mmap_mode="r")


def load_settings(dirs: list[Path], images: ImageSet) -> list[Setting]:
    settings = []
    for folder in dirs:
        scores = pd.read_parquet(folder / "scores.parquet")
        if scores["image_id"].tolist() != images.table["image_id"].tolist():
            raise DataError(f"{folder} was made from another inversion: re-run counterfactual")
        method, scale = str(scores["method"].iloc[0]), float(scores["scale"].iloc[0])
        settings.append(Setting(method, scale, folder, scores))
    return sorted(settings, key=lambda s: (s.method, s.scale))


def pixel_map_views(
    setting: Setting, names: Sequence[str], sigma: float
) -> dict[str, SmoothedView]:
    """The anomaly maps ``names`` (keys of :data:`PIXEL_MAPS`), smoothed by ``sigma`` pixels."""
    return {
        name: SmoothedView(setting.array(PIXEL_MAPS[name][0]), sigma, PIXEL_MAPS[name][1])
        for name in names
    }
