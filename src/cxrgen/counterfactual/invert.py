"""Stage ``invert``: every image of the evaluated splits encoded to its DDIM latent at depth L.

``invert_split(model_dir, store_dir, split_dir, out_dir, cfg)`` writes to ``out_dir`` a latents
folder (:mod:`cxrgen.data.latents`, which reads it):

* ``latents.npy``: float32 (N, H, W), the latent x_L of each image (model units);
* ``reconstructions.npy``: float32 (N, H, W) in [0, 1], each latent decoded with the same
  conditioning and no guidance (the exactness check of the inversion; the counterfactual
  stage also measures what guidance changed against it);
* ``index.parquet``: row (of the two arrays), split, store_row, image_id, patient_id,
  class_name, label, cond_label, recon_psnr (dB, [0, 1] data range), recon_max_abs,
  recon_mae, latent_std;
* ``trajectory.json``: the DDIM timesteps and conditioning, which every counterfactual decodes
  with; ``provenance.json``.

Both arrays are streamed batch by batch into memory maps: memory is bounded by the batch size.
Nothing is random, so the result does not depend on the batch size.

Inference is label-blind by default: every image is encoded with the same class (the null
class, ``unconditional``, or the counterfactual's target class, ``target``), so no image's
label reaches its own latent, reconstruction or anything computed from them. The
``label_informed`` conditioning (each image encoded with its own class: the abduction step of a
counterfactual *explanation* of an image whose label is known) is kept for that use only;
its trajectory says so and the evaluation keeps its numbers out of detection, severity and
the headline.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from skimage.metrics import peak_signal_noise_ratio
from tqdm.auto import tqdm

from cxrgen import io, provenance
from cxrgen.config import check
from cxrgen.counterfactual import guidance
from cxrgen.counterfactual.ddim import decode, invert, trajectory
from cxrgen.data.classes import HEALTHY_CLASS
from cxrgen.data.latents import LATENTS, RECONSTRUCTIONS, write_trajectory
from cxrgen.data.store import INDEX_FILE, ImageSet, array_path, image_set
from cxrgen.devices import check_device_name, resolve_device
from cxrgen.diffusion.model import load_diffusion
from cxrgen.errors import DataError

log = logging.getLogger(__name__)

LABEL_INFORMED = "label_informed"
CONDITIONINGS = ("unconditional", "target", LABEL_INFORMED)


@dataclass(frozen=True)
class InvertConfig:
    """How to invert.

    splits: the splits whose images are inverted, in this order (the calibration split, on
    which settings are chosen, and the test split, on which they are reported). steps: DDIM
    steps from the image to the latent (and back). depth: L as a fraction of the training
    timesteps (Wolleb et al.: 500 of 1000 = 0.5). conditioning: the class the UNet is given
    while encoding and reconstructing, the same for every image: 'unconditional' (the null
    class of classifier-free guidance) or 'target' (``target_class``, as Wolleb et al.
    encode); 'label_informed' gives each image its own class (reads the labels: counterfactual
    explanations only, never a detection result). target_class: the class of 'target'.
    batch_size: images per forward pass (the result does not depend on it). precision: 'bf16'
    autocast on CUDA or 'fp32' (CPU always float32). device: auto/cpu/cuda.
    """

    splits: tuple[str, ...] = ("calibration", "test")
    steps: int = 12
    depth: float = 0.5
    conditioning: str = "unconditional"
    target_class: str = HEALTHY_CLASS
    batch_size: int = 16
    precision: str = "bf16"
    device: str = "auto"

    def __post_init__(self):
        check(len(self.splits) >= 1, "splits needs at least one split name")
        check(len(set(self.splits)) == len(self.splits), f"splits has duplicates: {self.splits}")
        check(self.steps >= 1, f"steps must be >= 1, got {self.steps}")
        check(0 < self.depth <= 1, f"depth must be in (0, 1], got {self.depth}")
        check(
            self.conditioning in CONDITIONINGS,
            f"conditioning must be one of {CONDITIONINGS}, got {self.conditioning!r}",
        )
        check(self.batch_size >= 1, "batch_size must be >= 1")
        check(
            self.precision in guidance.PRECISIONS,
            f"precision must be one of {guidance.PRECISIONS}, got {self.precision!r}",
        )
        check_device_name(self.device)


def conditioning_labels(
    cfg: InvertConfig, table: pd.DataFrame, classes: list[str], null: int
) -> np.ndarray:
    """The class every image is encoded with: one class for all unless label-informed."""
    if cfg.conditioning == LABEL_INFORMED:
        log.warning(
            "conditioning 'label_informed': each image is encoded with its own label; the "
            "results explain known labels and are not a detection or severity result"
        )
        return table["label"].to_numpy(np.int64)
    if cfg.conditioning == "target":
        if cfg.target_class not in classes:
            raise DataError(f"invert.target_class {cfg.target_class!r} is not one of {classes}")
        return np.full(len(table), classes.index(cfg.target_class), np.int64)
    return np.full(len(table), null, np.int64)


def check_model_fits(
    unet, classes: list[str], images: ImageSet, applied: str | None = None
) -> None:
    """DataError unless the diffusion model was trained on these classes and this image size.

    ``applied``: where the images are another data set's than the model's, the setting that
    says so (the workflow's ``datasets.X.apply_model: Y``); the errors name it and what to set.
    """
    if list(images.classes) != list(classes):
        fix = (
            f"{applied}: split the data set into the model's classes (split.classes)"
            if applied
            else "use the split the model was trained with"
        )
        raise DataError(
            f"the diffusion model was trained on classes {list(classes)} but the images have "
            f"{list(images.classes)}: {fix}"
        )
    size = unet.config.sample_size
    model_hw = (size, size) if isinstance(size, int) else tuple(size)
    if model_hw != images.shape:
        fix = (
            f"{applied}: store the data set at the model's size (preprocess.size "
            f"{model_hw[0]}; left unset, it is the model's data set's size)"
            if applied
            else "use the store it was trained on"
        )
        raise DataError(
            f"the diffusion model takes {model_hw[0]}x{model_hw[1]} images but the store holds "
            f"{images.shape[0]}x{images.shape[1]}: {fix}"
        )


def trajectory_settings(cfg: InvertConfig, classes: list[str]) -> dict:
    """The settings ``trajectory.json`` records beside the trajectory."""
    return {
        "steps": cfg.steps,
        "depth": cfg.depth,
        "conditioning": cfg.conditioning,
        "label_informed": cfg.conditioning == LABEL_INFORMED,
        "target_class": cfg.target_class if cfg.conditioning == "target" else None,
        "splits": list(cfg.splits),
        "classes": classes,
    }


def psnr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """PSNR in dB of images in [0, 1] (inf when identical)."""
    if np.array_equal(reference, estimate):
        return float("inf")
    return float(peak_signal_noise_ratio(reference, estimate, data_range=1.0))


def invert_split(
    model_dir: str | Path,
    store_dir: str | Path,
    split_dir: str | Path,
    out_dir: str | Path,
    cfg: InvertConfig,
    progress: bool = True,
    applied: str | None = None,
    labelled_only: bool = True,
) -> pd.DataFrame:
    """Invert every labelled image of ``cfg.splits``; return the index table (also written).

    ``applied``: the setting that makes the model another data set's (:func:`check_model_fits`).
    ``labelled_only`` False: also unlabelled images (``cxrgen apply``; label-blind conditioning).
    """
    model_dir, store_dir, split_dir, out_dir = map(Path, (model_dir, store_dir, split_dir, out_dir))
    device = resolve_device(cfg.device)
    unet, scheduler, classes = load_diffusion(model_dir, device)
    images = image_set(store_dir, split_dir, cfg.splits, labelled_only)
    check_model_fits(unet, classes, images, applied)
    traj = trajectory(scheduler, cfg.steps, cfg.depth)
    log.info(
        "inverting %d %s images: %d DDIM steps to t = %d of %d, conditioning %s, batch %d on %s",
        len(images), "+".join(cfg.splits), cfg.steps, traj.depth_timestep,
        scheduler.config.num_train_timesteps, cfg.conditioning, cfg.batch_size, device,
    )  # fmt: skip
    table = images.table.copy()
    null = guidance.null_label(unet)
    table["cond_label"] = conditioning_labels(cfg, table, classes, null)
    shape = (len(images), *images.shape)
    stats = []
    bar = tqdm(total=len(images), desc="invert", unit="img", disable=not progress)
    with (
        io.open_npy_memmap(array_path(out_dir, LATENTS), shape, np.float32) as latents,
        io.open_npy_memmap(array_path(out_dir, RECONSTRUCTIONS), shape, np.float32) as recons,
    ):
        for start, stop in images.batches(cfg.batch_size):
            unit = images.rows(start, stop)
            x0 = torch.from_numpy(unit * 2 - 1)[:, None].to(device)
            labels = torch.tensor(table["cond_label"].to_numpy()[start:stop])
            predict = guidance.conditional(unet, labels, cfg.precision)
            x_latent = invert(predict, traj, x0)
            recon = decode(predict, traj, x_latent)
            recon_unit = ((recon[:, 0] + 1) / 2).clamp(0, 1).cpu().numpy()
            latents[start:stop] = x_latent[:, 0].cpu().numpy()
            recons[start:stop] = recon_unit
            for ref, est, lat in zip(unit, recon_unit, latents[start:stop], strict=True):
                err = np.abs(est - ref)
                stats.append(
                    (psnr(ref, est), float(err.max()), float(err.mean()), float(lat.std()))
                )
            bar.update(stop - start)
    bar.close()
    table[["recon_psnr", "recon_max_abs", "recon_mae", "latent_std"]] = np.array(stats).reshape(
        -1, 4
    )
    io.write_parquet(out_dir / INDEX_FILE, table)
    write_trajectory(out_dir, traj, trajectory_settings(cfg, classes))
    provenance.write(
        out_dir / "provenance.json",
        "invert",
        cfg,
        model=str(model_dir),
        store=str(store_dir),
        split=str(split_dir),
        timesteps=list(traj.timesteps),
        n_images=len(table),
        recon_psnr_median=float(table["recon_psnr"].median()),
    )
    log.info(
        "reconstruction PSNR median %.1f dB (min %.1f), max abs error %.4f",
        table["recon_psnr"].median(), table["recon_psnr"].min(), table["recon_max_abs"].max(),
    )  # fmt: skip
    return table
