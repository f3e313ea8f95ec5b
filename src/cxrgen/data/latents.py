"""The latents format (the invert stage's folder ``latents/{dataset}/``) and its reader.

* ``latents.npy``: float32 (N, H, W), the DDIM latent x_L of each image (model units);
* ``reconstructions.npy``: float32 (N, H, W) in [0, 1], each latent decoded back;
* ``index.parquet``: row (of the two arrays), split, store_row, image_id, patient_id,
  class_name, label, ... (the :class:`~cxrgen.data.store.ImageSet` table of the images);
* ``trajectory.json``: the DDIM timesteps and alpha_bars, and the settings of the inversion
  (classes, conditioning, ...), which every counterfactual decodes with.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cxrgen import io
from cxrgen.counterfactual.ddim import Trajectory
from cxrgen.data.store import INDEX_FILE, ImageSet, array_path
from cxrgen.errors import DataError

LATENTS, RECONSTRUCTIONS = "latents", "reconstructions"  # arrays, each in {name}.npy
TRAJECTORY_FILE = "trajectory.json"


def open_array(latents_dir: str | Path, name: str = LATENTS) -> np.ndarray:
    """Array ``name`` (:data:`LATENTS` or :data:`RECONSTRUCTIONS`), memory-mapped."""
    return np.load(array_path(latents_dir, name), mmap_mode="r")


def write_trajectory(latents_dir: Path, traj: Trajectory, settings: dict) -> None:
    """``trajectory.json``: the trajectory's timesteps and alpha_bars, then ``settings``."""
    io.write_json(
        Path(latents_dir) / TRAJECTORY_FILE,
        {"timesteps": list(traj.timesteps), "alpha_bars": list(traj.alpha_bars), **settings},
    )


def read_trajectory(latents_dir: Path) -> tuple[Trajectory, dict]:
    path = Path(latents_dir) / TRAJECTORY_FILE
    if not path.exists():
        raise DataError(f"no inversion in {latents_dir} (missing {TRAJECTORY_FILE}): run invert")
    meta = io.read_json(path)
    return Trajectory(tuple(meta["timesteps"]), tuple(meta["alpha_bars"])), meta


def inverted_set(latents_dir: Path, store_dir: Path) -> tuple[ImageSet, Trajectory, dict]:
    """The inverted images (index.parquet of the invert stage), their trajectory and its meta."""
    traj, meta = read_trajectory(latents_dir)
    table = pd.read_parquet(Path(latents_dir) / INDEX_FILE)
    images = ImageSet(Path(store_dir), tuple(meta["classes"]), table)
    latents = open_array(latents_dir)
    if len(latents) != len(table) or tuple(latents.shape[1:]) != images.shape:
        raise DataError(
            f"{latents_dir}: {latents.shape} latents for {len(table)} images of "
            f"{images.shape} in {store_dir}: re-run invert"
        )
    return images, traj, meta
