"""A tiny multi-domain tensor store + split for the GAN tests (K domains, distinct textures)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cxrgen.data.classes import write_classes

DOMAINS3 = ["Normal", "COVID-19", "Non-COVID"]


def domain_images(n: int, size: int, label: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((n, size, size), np.float32)
    for i in range(n):
        img = 0.3 + 0.2 * yy + 0.03 * rng.standard_normal((size, size))
        if label >= 1:  # bright blobs, one per extra domain index
            for _ in range(label):
                cy, cx = rng.uniform(0.25, 0.75, size=2)
                img += 0.4 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 0.1**2))
        out[i] = np.clip(img, 0, 1)
    return out


def make_domain_store(
    root: Path,
    classes: list[str],
    n_train: int = 6,
    n_valid: int = 3,
    size: int = 16,
    dtype=np.uint8,
    seed: int = 0,
    splits: dict[str, tuple[int, int]] | None = None,
):
    """store/ + split/ with ``n_train`` / ``n_valid`` images per class and one excluded row.

    ``splits`` overrides the (train, valid) counts of single classes. Returns (store, split).
    """
    rng = np.random.default_rng(seed)
    store, split = root / "store", root / "split"
    store.mkdir(parents=True)
    split.mkdir(parents=True)
    images, labels, names = [], [], []
    for c, name in enumerate(classes):
        nt, nv = (splits or {}).get(name, (n_train, n_valid))
        images.append(domain_images(nt + nv, size, c, rng))
        labels += [c] * (nt + nv)
        names += ["train"] * nt + ["valid"] * nv
    images.append(domain_images(1, size, 0, rng))
    labels.append(-1)
    names.append("excluded")
    stack = np.concatenate(images)
    top = np.iinfo(dtype).max
    np.save(store / "images.npy", np.rint(stack * top).astype(dtype))
    rows = np.arange(len(stack))
    ids = [f"img{i:03d}" for i in rows]
    pd.DataFrame({"row": rows, "image_id": ids}).to_parquet(store / "index.parquet")
    pd.DataFrame(
        {
            "row": rows,
            "image_id": ids,
            "patient_id": [f"p{i}" for i in rows],
            "class_name": [classes[v] if v >= 0 else "other" for v in labels],
            "label": labels,
            "split": names,
        }
    ).to_parquet(split / "split.parquet")
    write_classes(split / "classes.json", classes)
    return store, split
