"""Synthetic sets for evaluation: ``generate_synthetic(model_dir, store, split, out, cfg)``.

StarGAN (as StarGAN v2's evaluation): every image of ``cfg.split`` of each source domain is
translated into each *other* domain ``num_outs_per_domain`` times, latent-guided (a fresh z per
output) and / or reference-guided (a random image of the target domain from the same split per
output). DCGAN: ``samples_per_class`` samples per class. The model kind is read from its
``config.json``.

Every output's randomness (its z, its reference) comes from its own generator seeded by
(seed, mode, source row, target, k) or (seed, class, k), so the set does not depend on the
batch size; images are streamed into a memory-mapped ``images.npy`` (N, H, W) so memory stays
bounded by one batch. Outputs in ``out_dir``: ``images.npy`` (uint8 or uint16, like the store),
``index.parquet`` (one row per image: row, model, mode, source_row, source_image_id,
source_domain, target_domain, target_label, output, reference_row, reference_image_id; -1 / ""
where not applicable), ``classes.json`` and ``provenance.json``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from cxrgen import io, provenance
from cxrgen.config import check
from cxrgen.data.classes import write_classes
from cxrgen.data.store import (
    CLASSES_FILE,
    IMAGES,
    INDEX_FILE,
    SPLIT_FILE,
    SplitImages,
    array_path,
    load_split,
    unit_rows,
)
from cxrgen.devices import check_device_name, resolve_device
from cxrgen.errors import DataError
from cxrgen.gan.dcgan import load_dcgan
from cxrgen.gan.stargan_nets import load_stargan
from cxrgen.training.seeding import Purpose, derive_seed, generator

log = logging.getLogger(__name__)

MODES = ("latent", "reference")
MODE_CODE = {"latent": 1, "reference": 2, "sample": 3}
DTYPES = ("uint8", "uint16")


@dataclass(frozen=True)
class GenerateConfig:
    """How many synthetic images to make, and how.

    seed: every z and reference choice derives from it. split: the source / reference images
    (StarGAN v2 evaluates on the validation set). num_outs_per_domain: outputs per source image
    and target domain (StarGAN v2: 10). modes: 'latent' and / or 'reference'.
    max_sources_per_domain: source images per domain (0 = all; a seeded subset otherwise; e.g.
    400 with 3 domains and 10 outputs gives the paper's 8000 images per target domain).
    samples_per_class: DCGAN images per class. batch_size: images per forward pass (the result
    does not depend on it). dtype: 'uint8' or 'uint16' of images.npy. device: auto/cpu/cuda.
    """

    seed: int = 0
    split: str = "valid"
    num_outs_per_domain: int = 10
    modes: tuple[str, ...] = MODES
    max_sources_per_domain: int = 0
    samples_per_class: int = 1000
    batch_size: int = 32
    dtype: str = "uint8"
    device: str = "auto"

    def __post_init__(self):
        check(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        check(self.num_outs_per_domain >= 1, "num_outs_per_domain must be >= 1")
        check(
            len(self.modes) >= 1 and set(self.modes) <= set(MODES),
            f"modes must be a non-empty subset of {MODES}, got {self.modes}",
        )
        check(self.max_sources_per_domain >= 0, "max_sources_per_domain must be >= 0 (0 = all)")
        check(self.samples_per_class >= 1, "samples_per_class must be >= 1")
        check(self.batch_size >= 1, "batch_size must be >= 1")
        check(self.dtype in DTYPES, f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        check_device_name(self.device)


def _image_ids(split_dir: Path) -> dict[int, str]:
    table = pd.read_parquet(split_dir / SPLIT_FILE, columns=["row", "image_id"])
    return dict(zip(table["row"].tolist(), table["image_id"].astype(str).tolist(), strict=True))


def _sources(data: SplitImages, cfg: GenerateConfig) -> list[np.ndarray]:
    """Store rows of the source images of each domain (a seeded subset when capped)."""
    out = []
    for c in range(data.num_classes):
        rows = np.sort(data.rows[data.labels == c])
        if cfg.max_sources_per_domain and len(rows) > cfg.max_sources_per_domain:
            rng = np.random.default_rng(derive_seed(cfg.seed, Purpose.SAMPLE, 0, c))
            rows = np.sort(rng.choice(rows, cfg.max_sources_per_domain, replace=False))
        out.append(rows)
    return out


def stargan_plan(data: SplitImages, ids: dict[int, str], cfg: GenerateConfig) -> pd.DataFrame:
    """One row per output image, in order mode, source domain, source image, target, k."""
    pools = [np.sort(data.rows[data.labels == c]) for c in range(data.num_classes)]
    records = []
    for mode in cfg.modes:
        for s, rows in enumerate(_sources(data, cfg)):
            for row in rows.tolist():
                for t in range(data.num_classes):
                    if t == s:
                        continue
                    for k in range(cfg.num_outs_per_domain):
                        ref = -1
                        if mode == "reference":
                            seed = derive_seed(cfg.seed, Purpose.SAMPLE, 2, row, t, k)
                            ref = int(pools[t][np.random.default_rng(seed).integers(len(pools[t]))])
                        records.append((mode, row, s, t, k, ref))
    plan = pd.DataFrame(
        records,
        columns=["mode", "source_row", "source_label", "target_label", "output", "reference_row"],
    )
    names = np.array(data.classes, dtype=object)
    plan["source_domain"] = names[plan["source_label"].to_numpy()] if len(plan) else []
    plan["source_image_id"] = plan["source_row"].map(ids)
    plan["reference_image_id"] = plan["reference_row"].map(ids).fillna("")
    return plan.drop(columns="source_label")


def dcgan_plan(classes: tuple[str, ...], cfg: GenerateConfig) -> pd.DataFrame:
    k = cfg.samples_per_class
    labels = np.repeat(np.arange(len(classes)), k)
    return pd.DataFrame(
        {
            "mode": "sample",
            "source_row": -1,
            "target_label": labels,
            "output": np.tile(np.arange(k), len(classes)),
            "reference_row": -1,
            "source_domain": "",
            "source_image_id": "",
            "reference_image_id": "",
        }
    )


def _latent(seed: int, dim: int, *parts: int) -> torch.Tensor:
    return torch.randn(dim, generator=generator(seed, Purpose.SAMPLE, *parts))


def generate_synthetic(
    model_dir: str | Path,
    store_dir: str | Path,
    split_dir: str | Path,
    out_dir: str | Path,
    cfg: GenerateConfig,
    progress: bool = True,
) -> pd.DataFrame:
    """Write the synthetic set of the model in ``model_dir``; return its index table."""
    model_dir, store_dir, split_dir, out_dir = map(Path, (model_dir, store_dir, split_dir, out_dir))
    config_path = model_dir / "config.json"
    kind = io.read_json(config_path).get("kind") if config_path.exists() else None
    if kind not in ("stargan", "dcgan"):
        raise DataError(f"{model_dir} holds no trained GAN (config.json with kind stargan/dcgan)")
    device = resolve_device(cfg.device)
    model = (load_stargan if kind == "stargan" else load_dcgan)(model_dir, device)
    data = load_split(store_dir, split_dir, cfg.split)
    if tuple(data.classes) != tuple(model.classes):
        raise DataError(
            f"the model was trained on classes {list(model.classes)} but {split_dir} has "
            f"{list(data.classes)}: use the split the model was trained with"
        )
    if (data.height, data.width) != tuple(model.image_size):
        raise DataError(
            f"the model makes {model.image_size[0]}x{model.image_size[1]} images but the store "
            f"holds {data.height}x{data.width}: use the store the model was trained on"
        )
    if kind == "stargan":
        plan = stargan_plan(data, _image_ids(split_dir), cfg)
    else:
        plan = dcgan_plan(model.classes, cfg)
    plan.insert(0, "row", np.arange(len(plan)))
    plan.insert(1, "model", kind)
    plan["target_domain"] = np.array(model.classes, dtype=object)[plan["target_label"].to_numpy()]
    if plan.empty:
        raise DataError(f"nothing to generate: split '{cfg.split}' gives no source images")
    log.info(
        "%s: generating %d images (%s)", kind, len(plan), plan.groupby("mode").size().to_dict()
    )

    store = np.load(data.images_path, mmap_mode="r")
    top = float(np.iinfo(cfg.dtype).max)

    def load(rows: np.ndarray) -> torch.Tensor:
        return (torch.from_numpy(unit_rows(store, rows)) * 2 - 1)[:, None].to(device)

    bar = tqdm(total=len(plan), desc=f"generate {kind}", unit="img", disable=not progress)
    shape = (len(plan), data.height, data.width)
    with io.open_npy_memmap(array_path(out_dir, IMAGES), shape, cfg.dtype) as out:
        for start in range(0, len(plan), cfg.batch_size):
            chunk = plan.iloc[start : start + cfg.batch_size]
            y = torch.tensor(chunk["target_label"].to_numpy(), device=device)
            keys = list(
                zip(chunk["source_row"], chunk["target_label"], chunk["output"], strict=True)
            )
            if kind == "dcgan":
                z = torch.stack([_latent(cfg.seed, model.latent_dim, 3, t, k) for _, t, k in keys])
                images = model.sample(z.to(device), y)
            else:
                x = load(chunk["source_row"].to_numpy())
                images = torch.empty_like(x)
                is_latent = (chunk["mode"] == "latent").to_numpy()
                mask = torch.tensor(is_latent, device=device)
                if is_latent.any():
                    z = [
                        _latent(cfg.seed, model.latent_dim, 1, r, t, k)
                        for (r, t, k), m in zip(keys, is_latent, strict=True)
                        if m
                    ]
                    z = torch.stack(z).to(device)
                    images[mask] = model.translate_latent(x[mask], y[mask], z)
                if not is_latent.all():
                    refs = load(chunk["reference_row"].to_numpy()[~is_latent])
                    images[~mask] = model.translate_reference(x[~mask], y[~mask], refs)
            unit = ((images[:, 0].float() + 1) / 2).clamp(0, 1).cpu().numpy()
            out[start : start + len(chunk)] = np.rint(unit * top).astype(cfg.dtype)
            bar.update(len(chunk))
    bar.close()
    columns = ["row", "model", "mode", "source_row", "source_image_id", "source_domain"]
    columns += ["target_domain", "target_label", "output", "reference_row", "reference_image_id"]
    plan = plan[columns]
    io.write_parquet(out_dir / INDEX_FILE, plan)
    write_classes(out_dir / CLASSES_FILE, list(model.classes))
    provenance.write(
        out_dir / "provenance.json",
        "generate_synthetic",
        cfg,
        model=str(model_dir),
        model_kind=kind,
        store=str(store_dir),
        split=str(split_dir),
        counts=plan.groupby(["mode", "target_domain"])
        .size()
        .rename("n")
        .reset_index()
        .to_dict("records"),
        image_size=[data.height, data.width],
    )
    log.info("wrote %d synthetic images to %s", len(plan), out_dir)
    return plan
