"""A tiny tensor store + split for training tests: class 1 images carry a bright blob."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cxrgen.data.classes import write_classes

CLASSES = ["Normal", "Lung Opacity"]


def blob_images(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, size, size) float images in [0, 1] and labels (alternating 0, 1)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    labels = np.arange(n) % 2
    images = np.empty((n, size, size), np.float32)
    for i in range(n):
        img = 0.25 + 0.2 * yy + 0.03 * rng.standard_normal((size, size))
        if labels[i]:
            cy, cx = rng.uniform(0.3, 0.7, size=2)
            img += 0.5 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 0.12**2))
        images[i] = np.clip(img, 0, 1)
    return images, labels


def make_store(root: Path, n: int = 32, size: int = 32, n_valid: int = 8, seed: int = 0):
    """Write store/{images.npy,index.parquet} and split/{split.parquet,classes.json}.

    The last ``n_valid`` images are held out (calibration, then test); one excluded row
    (label -1). Returns (store_dir, split_dir).
    """
    store, split = root / "store", root / "split"
    store.mkdir(parents=True)
    split.mkdir(parents=True)
    images, labels = blob_images(n + 1, size, seed)
    np.save(store / "images.npy", np.rint(images * 65535).astype(np.uint16))
    rows = np.arange(n + 1)
    ids = [f"img{i:03d}" for i in rows]
    pd.DataFrame({"row": rows, "image_id": ids}).to_parquet(store / "index.parquet")
    names = [CLASSES[v] for v in labels]
    # held out: the first half calibration, the rest test
    split_name = np.where(rows < n - n_valid, "train", "test").astype(object)
    split_name[n - n_valid : n - n_valid + n_valid // 2] = "calibration"
    label = labels.copy()
    split_name[n] = "excluded"
    label[n] = -1
    names[n] = "No Lung Opacity / Not Normal"
    pd.DataFrame(
        {
            "row": rows,
            "image_id": ids,
            "patient_id": [f"p{i}" for i in rows],
            "class_name": names,
            "label": label,
            "split": split_name,
        }
    ).to_parquet(split / "split.parquet")
    write_classes(split / "classes.json", CLASSES)
    return store, split
