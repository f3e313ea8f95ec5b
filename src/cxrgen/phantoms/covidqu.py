"""Phantom chest X-rays laid out like COVID-QU-Ex (lung segmentation data), as 8-bit PNGs.

Layout of ``out_dir`` (see :func:`make_covidqu_phantoms`)::

    {Train,Val,Test}/{COVID-19,Non-COVID,Normal}/images/{name}.png
    {Train,Val,Test}/{COVID-19,Non-COVID,Normal}/lung masks/{name}.png   (0 / 255)
    manifest.parquet, phantom_config.json

Domains: COVID-19-like (bilateral, peripheral and lower-zone ground glass),
Non-COVID-like (focal lobar consolidation, mostly unilateral) and Normal.
"""

from __future__ import annotations

import dataclasses
import io as _io
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from cxrgen import io
from cxrgen.config import check
from cxrgen.data.classes import COVID_19, COVID_QU_EX_CLASSES, NON_COVID, NORMAL
from cxrgen.data.store import RALO_COLUMNS
from cxrgen.phantoms.anatomy import sample_anatomy
from cxrgen.phantoms.findings import sample_devices
from cxrgen.phantoms.lesions import LesionSpec, ralo_scores, sample_lesion_spec
from cxrgen.phantoms.scene import render_image, sample_setup

logger = logging.getLogger(__name__)

SPLITS = ("Train", "Val", "Test")
IMAGES_DIR = "images"
MASKS_DIR = "lung masks"
_NAMES = {
    COVID_19: "covid_{k}.png",
    NON_COVID: "non_COVID ({k}).png",
    NORMAL: "Normal ({k}).png",
}


@dataclass(frozen=True)
class CovidPhantomConfig:
    """COVID-QU-Ex-layout PNG phantoms; counts are images per class in each split."""

    seed: int = 0
    size: int = 256
    n_train_per_class: int = 40
    n_val_per_class: int = 10
    n_test_per_class: int = 10
    frac_devices: float = 0.15
    frac_ap: float = 0.4

    def __post_init__(self) -> None:
        check(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        check(32 <= self.size <= 4096, f"size must be in 32..4096, got {self.size}")
        for name in ("n_train_per_class", "n_val_per_class", "n_test_per_class"):
            check(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        check(
            self.n_train_per_class + self.n_val_per_class + self.n_test_per_class > 0,
            "at least one of n_train_per_class, n_val_per_class, n_test_per_class must be > 0",
        )
        for name in ("frac_devices", "frac_ap"):
            value = getattr(self, name)
            check(0.0 <= value <= 1.0, f"{name} must be in [0, 1], got {value}")

    def count(self, split: str) -> int:
        return {
            "Train": self.n_train_per_class,
            "Val": self.n_val_per_class,
            "Test": self.n_test_per_class,
        }[split]


def _lesion_for(class_name: str, rng: np.random.Generator) -> LesionSpec | None:
    if class_name == COVID_19:
        return sample_lesion_spec(rng, "peripheral", 0.85, (2, 3, 3, 4), (1, 2, 2, 3, 3))
    if class_name == NON_COVID:
        pattern = "lobar" if rng.random() < 0.7 else "patchy"
        return sample_lesion_spec(rng, pattern, 0.2, (1, 2, 2, 3), (3, 3, 4, 4))
    return None


def _png_bytes(arr: np.ndarray) -> bytes:
    buf = _io.BytesIO()
    Image.fromarray(arr, mode="L").save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def make_covidqu_phantoms(
    out_dir: str | os.PathLike, cfg: CovidPhantomConfig, progress: bool = True
) -> pd.DataFrame:
    """Write the COVID-QU-Ex-layout phantom set into ``out_dir``; return its manifest.

    The same ``cfg`` gives byte-identical PNGs. Image names are unique per
    class across splits, as in the real set.
    """
    out = Path(out_dir)
    jobs = [
        (si, ci, split, cls)
        for si, split in enumerate(SPLITS)
        for ci, cls in enumerate(COVID_QU_EX_CLASSES)
        for _ in range(cfg.count(split))
    ]
    counters = dict.fromkeys(COVID_QU_EX_CLASSES, 0)
    rows = []
    for si, ci, split, cls in tqdm(
        jobs, disable=not progress, desc="COVID-QU-Ex phantoms", unit="img"
    ):
        counters[cls] += 1
        k = counters[cls]
        rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(si, ci, k)))
        anatomy = sample_anatomy(rng)
        devices = sample_devices(rng, 1, 2) if (ci < 2 and rng.random() < cfg.frac_devices) else ()
        setup = sample_setup(rng, (cfg.size, cfg.size), bool(rng.random() < cfg.frac_ap), devices)
        lesion = _lesion_for(cls, rng)
        r = render_image(anatomy, setup, lesion)
        image = np.rint(r.image * 255.0).astype(np.uint8)
        healthy = np.rint(r.healthy * 255.0).astype(np.uint8)
        mask = np.where(r.lungs > 0, 255, 0).astype(np.uint8)
        name = _NAMES[cls].format(k=k)
        folder = out / split / cls
        io.write_bytes(folder / IMAGES_DIR / name, _png_bytes(image))
        io.write_bytes(folder / MASKS_DIR / name, _png_bytes(mask))
        scores = ralo_scores(image / 255.0, healthy / 255.0, r.lesion, r.lungs)
        rows.append(
            {
                "split": split,
                "class_name": cls,
                "name": name,
                "image": f"{split}/{cls}/{IMAGES_DIR}/{name}",
                "mask": f"{split}/{cls}/{MASKS_DIR}/{name}",
                "opacity_pattern": lesion.pattern if lesion else "",
                "devices": ";".join(devices),
                **scores,
            }
        )
    df = pd.DataFrame(
        rows,
        columns=[
            "split",
            "class_name",
            "name",
            "image",
            "mask",
            "opacity_pattern",
            "devices",
            *RALO_COLUMNS,
        ],
    )
    _remove_stale(out, set(df["image"]) | set(df["mask"]))
    io.write_parquet(out / "manifest.parquet", df)
    io.write_json(out / "phantom_config.json", dataclasses.asdict(cfg))
    logger.info("wrote %d COVID-QU-Ex-layout phantom images to %s", len(df), out)
    return df


def _remove_stale(out: Path, keep: set[str]) -> None:
    """Delete PNGs an earlier run left in this layout's folders that this run did not write."""
    for split in SPLITS:
        for cls in COVID_QU_EX_CLASSES:
            for sub in (IMAGES_DIR, MASKS_DIR):
                for path in sorted((out / split / cls / sub).glob("*.png")):
                    if path.relative_to(out).as_posix() not in keep:
                        logger.warning("removing %s left by an earlier phantom run", path)
                        path.unlink()
