"""Stage ``counterfactual``: healthy counterfactuals of the inverted images, one method and scale.

``make_counterfactuals(method, scale, latents_dir, model_dir, store_dir, out_dir, cfg)``
decodes the latents of the invert stage (same trajectory, no re-inversion) toward
``cfg.target_class`` and writes to ``out_dir``:

* ``counterfactuals.npy``: float32 (N, H, W) in [0, 1], row i = row i of the latents' index;
* ``diff.npy``: float32 signed difference original - counterfactual (positive where the
  counterfactual is darker, as where a bright opacity was removed); ``absdiff.npy``: |diff|;
* ``scores.parquet``: one row per image (the index's ids and labels, method, scale and the
  statistics of :mod:`cxrgen.counterfactual.scores`); ``provenance.json``;
* ``examples.png``: original, reconstruction, counterfactual and |difference| of the images
  of each class with the largest and the smallest ``sum_abs``.

Methods: ``cfg`` (classifier-free guidance toward the target class, scale w) and ``cg``
(classifier guidance by the noise-aware classifier, scale s; the UNet conditioned on the null
class by default, as Wolleb et al.'s unconditional model) decode the latents; ``renoise``
(stochastic re-noising), ``msr`` (mask, stitch and re-sample on the map of the first-pass
method ``cfg.first_pass``) and ``thor`` (harmonised decoding) decode with classifier-free
guidance at scale w through the same DDIM loop, each with its own start and step hook
(:mod:`cxrgen.counterfactual.resample`); ``stargan``
translates the originals with Med-StyleGAN2 (:mod:`cxrgen.counterfactual.stargan`; the
scale mixes the image's own style with a random one), so every method is compared on the
same images. The result does not depend on the batch size (up to float rounding); arrays are
streamed into memory maps batch by batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from diffusers import DDPMScheduler
from tqdm.auto import tqdm

from cxrgen import io, provenance
from cxrgen.classifier.model import load_classifier
from cxrgen.config import check
from cxrgen.counterfactual import guidance, resample, stargan
from cxrgen.counterfactual.config import METHODS, CounterfactualConfig, scale_name
from cxrgen.counterfactual.ddim import Trajectory, decode
from cxrgen.counterfactual.invert import check_model_fits
from cxrgen.counterfactual.scores import difference_scores
from cxrgen.data.latents import LATENTS, RECONSTRUCTIONS, inverted_set, open_array
from cxrgen.data.store import ImageSet
from cxrgen.devices import resolve_device
from cxrgen.diffusion.model import check_same_schedule, load_diffusion
from cxrgen.errors import ConfigError, DataError
from cxrgen.gan.stargan_nets import load_stargan
from cxrgen.plotting import Panel, write_labelled_grid

log = logging.getLogger(__name__)

# translate(start, stop, originals in [0, 1]) -> counterfactuals in [0, 1], rows start..stop
Translator = Callable[[int, int, np.ndarray], np.ndarray]


def _diffusion(
    method: str,
    scale: float,
    latents_dir: Path,
    model_dir: Path,
    images: ImageSet,
    traj: Trajectory,
    cfg: CounterfactualConfig,
    classifier_dir: Path | None,
    device: torch.device,
    masks: Callable[[int, int], np.ndarray] | None = None,
) -> Translator:
    """Decode with classifier-free guidance (cfg, renoise, msr, thor) or classifier guidance
    (cg), each method with its start and step hook."""
    unet, scheduler, classes = load_diffusion(model_dir, device)
    check_model_fits(unet, classes, images)
    bars = scheduler.alphas_cumprod
    if [round(float(bars[t]), 9) for t in traj.timesteps] != [
        round(b, 9) for b in traj.alpha_bars[1:]
    ]:
        raise DataError(f"{latents_dir} was inverted with another noise schedule: re-run invert")
    targets = torch.full((len(images),), classes.index(cfg.target_class), dtype=torch.long)
    if method != "cg":

        def predictor(a: int, b: int) -> guidance.NoisePredictor:
            return guidance.classifier_free(unet, targets[a:b], scale, cfg.precision)

    else:
        if classifier_dir is None:
            raise ConfigError("method 'cg' needs the guidance classifier (classifier_dir)")
        classifier = load_classifier(classifier_dir, device)
        if (classifier_dir / "scheduler").is_dir():  # its copy of the schedule it trained with
            saved = DDPMScheduler.from_pretrained(classifier_dir / "scheduler")
            check_same_schedule(scheduler, saved)
        null = torch.full_like(targets, guidance.null_label(unet))
        unet_labels = targets if cfg.cg_conditioning == "target" else null

        def predictor(a: int, b: int) -> guidance.NoisePredictor:
            return guidance.classifier_guided(
                unet, classifier, bars, unet_labels[a:b], targets[a:b], scale, cfg.precision
            )

    latents = open_array(latents_dir, LATENTS)
    store_rows = images.table["store_row"].to_numpy()
    width = images.shape[1]

    def translate(a: int, b: int, original: np.ndarray) -> np.ndarray:
        x_latent = torch.from_numpy(np.array(latents[a:b]))[:, None].to(device)
        x0 = torch.from_numpy(original * 2 - 1)[:, None].float().to(device)
        fresh = mask = None
        if method in resample.STOCHASTIC:
            fresh = resample.image_noise(store_rows[a:b], images.shape, cfg.seed).to(device)
        if method == "msr":
            mask = torch.from_numpy(masks(a, b))[:, None].to(device)
        start, hook = resample.start_and_hook(
            method, x0, x_latent, traj, fresh, mask, cfg.harmonise_every, cfg.residual_scale,
            cfg.mask_smoothing * width,
        )  # fmt: skip
        out = decode(predictor(a, b), traj, start, cfg.clip_denoised, step_hook=hook)
        return ((out[:, 0] + 1) / 2).clamp(0, 1).cpu().numpy()

    return translate


def _msr_masks(
    images: ImageSet,
    cfg: CounterfactualConfig,
    first_pass_dir: Path | None,
    threshold: float | None = None,
) -> tuple[Callable[[int, int], np.ndarray], float]:
    """(masks(start, stop) -> bool (B, H, W), threshold): the dilated first-pass masks of
    method msr; the threshold is set on the calibration images unless given (``cxrgen apply``
    takes the one its training run set)."""
    if first_pass_dir is None:
        raise ConfigError(f"method 'msr' needs the first-pass counterfactual ({cfg.first_pass})")
    scores = pd.read_parquet(first_pass_dir / "scores.parquet", columns=["image_id"])
    if scores["image_id"].tolist() != images.table["image_id"].tolist():
        raise DataError(
            f"{first_pass_dir} holds other images than the latents: re-run its counterfactual"
        )
    diff = np.load(first_pass_dir / "diff.npy", mmap_mode="r")
    width = images.shape[1]
    sigma, dilation = cfg.mask_smoothing * width, round(cfg.mask_dilation * width)
    if threshold is None:
        threshold = msr_threshold(diff, images.table["split"].to_numpy(), cfg, first_pass_dir)

    def masks(a: int, b: int) -> np.ndarray:
        maps = resample.smoothed_removed(diff[a:b], sigma)
        return resample.first_pass_mask(maps, threshold, dilation)

    return masks, float(threshold)


def msr_threshold(
    diff: np.ndarray, splits: np.ndarray, cfg: CounterfactualConfig, where: Path
) -> float:
    """msr's mask threshold: the ``mask_quantile`` of the smoothed first-pass maps ``diff``
    (N, H, W) of the images whose split is the calibration split (``splits``, one per image)."""
    calibration = np.flatnonzero(np.asarray(splits) == cfg.calibration_split)
    if not len(calibration):
        raise DataError(
            f"no image of split {cfg.calibration_split!r} in {where} to set the msr mask "
            "threshold on (invert.splits must include it)"
        )
    sigma = cfg.mask_smoothing * diff.shape[-1]
    threshold = resample.mask_threshold(
        resample.smoothed_removed(diff[calibration], sigma), cfg.mask_quantile
    )
    log.info("msr mask: first pass %s, threshold %.4g (quantile %g of %d calibration images)",
             cfg.first_pass, threshold, cfg.mask_quantile, len(calibration))  # fmt: skip
    return threshold


def _stargan(
    scale: float, model_dir: Path, images: ImageSet, cfg: CounterfactualConfig, device
) -> Translator:
    """Translate the originals into the target domain with Med-StyleGAN2."""
    check(scale <= 1, f"the stargan scale is a style mix weight in [0, 1], got {scale}")
    model = load_stargan(model_dir, device)
    stargan.check_stargan_fits(model, images.classes, images.shape)
    target = images.classes.index(cfg.target_class)
    rows = images.table["row"].to_numpy()

    def translate(a: int, b: int, original: np.ndarray) -> np.ndarray:
        return stargan.translate(model, original, rows[a:b], target, scale, cfg.seed, device)

    return translate


def make_counterfactuals(
    method: str,
    scale: float,
    latents_dir: str | Path,
    model_dir: str | Path,
    store_dir: str | Path,
    out_dir: str | Path,
    cfg: CounterfactualConfig,
    classifier_dir: str | Path | None = None,
    progress: bool = True,
    first_pass_dir: str | Path | None = None,
    mask_threshold: float | None = None,
) -> pd.DataFrame:
    """Counterfactuals of every inverted image by ``method`` at ``scale``; return the scores.

    ``model_dir`` is the diffusion model (every method but stargan) or the StarGAN model.
    ``first_pass_dir``: method msr's first-pass counterfactual folder (``cfg.first_pass``);
    ``mask_threshold``: msr's mask threshold when it is not to be set on these images'
    calibration split (recorded in provenance.json either way).
    """
    check(method in METHODS, f"method must be one of {METHODS}, got {method!r}")
    check(scale >= 0, f"the guidance scale must be >= 0, got {scale}")
    latents_dir, model_dir, store_dir, out_dir = map(
        Path, (latents_dir, model_dir, store_dir, out_dir)
    )
    classifier_dir = None if classifier_dir is None else Path(classifier_dir)
    device = resolve_device(cfg.device)
    images, traj, meta = inverted_set(latents_dir, store_dir)
    if cfg.target_class not in images.classes:
        raise ConfigError(
            f"target_class {cfg.target_class!r} is not one of the classes {list(images.classes)}"
        )
    masks = None
    if method == "msr":
        first = None if first_pass_dir is None else Path(first_pass_dir)
        masks, mask_threshold = _msr_masks(images, cfg, first, mask_threshold)
    if method == "stargan":
        translate = _stargan(scale, model_dir, images, cfg, device)
    else:
        translate = _diffusion(
            method, scale, latents_dir, model_dir, images, traj, cfg, classifier_dir, device,
            masks,
        )  # fmt: skip
    how = (
        "image-to-image translation"
        if method == "stargan"
        else f"{traj.steps} DDIM steps from t = {traj.depth_timestep}"
    )
    log.info(
        "%s counterfactuals, scale %s, toward %s: %d images, %s",
        method, scale_name(scale), cfg.target_class, len(images), how,
    )  # fmt: skip
    recons = open_array(latents_dir, RECONSTRUCTIONS)
    shape = (len(images), *images.shape)
    scores = []
    bar = tqdm(total=len(images), desc=f"{method} {scale_name(scale)}", unit="img",
               disable=not progress)  # fmt: skip
    with (
        io.open_npy_memmap(out_dir / "counterfactuals.npy", shape, np.float32) as cf_out,
        io.open_npy_memmap(out_dir / "diff.npy", shape, np.float32) as diff_out,
        io.open_npy_memmap(out_dir / "absdiff.npy", shape, np.float32) as abs_out,
    ):
        for start, stop in images.batches(cfg.batch_size):
            original = images.rows(start, stop)
            cf = translate(start, stop, original)
            diff = original - cf
            cf_out[start:stop] = cf
            diff_out[start:stop] = diff
            abs_out[start:stop] = np.abs(diff)
            # the change made by guidance alone: against the decoded latent (diffusion only)
            recon = None if method == "stargan" else np.asarray(recons[start:stop])
            stats = difference_scores(
                original, cf, recon, cfg.top_fraction, cfg.highpass_cutoff,
            )  # fmt: skip
            scores.append(pd.DataFrame(stats))
            bar.update(stop - start)
    bar.close()
    # ids and labels ride along for scoring; no score above was computed from them
    ids = images.table[["row", "split", "store_row", "image_id", "patient_id", "class_name",
                        "label"]]  # fmt: skip
    table = pd.concat([ids.reset_index(drop=True), pd.concat(scores, ignore_index=True)], axis=1)
    table.insert(1, "method", method)
    table.insert(2, "scale", float(scale))
    table.insert(3, "label_informed", bool(meta.get("label_informed", False)))
    io.write_parquet(out_dir / "scores.parquet", table)
    write_examples(out_dir / "examples.png", images, table, latents_dir, out_dir, cfg.target_class)
    provenance.write(
        out_dir / "provenance.json",
        "counterfactual",
        cfg,
        method=method,
        scale=float(scale),
        latents=str(latents_dir),
        model=str(model_dir),
        classifier=None if classifier_dir is None else str(classifier_dir),
        inversion=meta,
        mask_threshold=mask_threshold if method == "msr" else None,
        mean_sum_abs=table.groupby("class_name")["sum_abs"].mean().to_dict(),
    )
    log.info(
        "mean sum |original - counterfactual| per class: %s",
        table.groupby("class_name")["sum_abs"].mean().round(2).to_dict(),
    )
    return table


def example_rows(table: pd.DataFrame, per_class: int = 2) -> list[int]:
    """Rows shown in the examples figure: per class, the largest then the smallest sum_abs."""
    rows = []
    for _, group in table.groupby("label", sort=True):
        ordered = group.sort_values(["sum_abs", "row"], ascending=[False, True])["row"].tolist()
        picks = ordered[:per_class] + ordered[::-1][:per_class]
        rows += list(dict.fromkeys(picks))  # small classes: no image twice
    return rows


def write_examples(
    path: Path,
    images,
    table: pd.DataFrame,
    latents_dir: Path,
    out_dir: Path,
    target_class: str,
) -> None:
    """A labelled grid: one row per example image (:func:`example_rows`), four columns."""
    rows = example_rows(table)
    recons = open_array(latents_dir, RECONSTRUCTIONS)
    cfs = np.load(out_dir / "counterfactuals.npy", mmap_mode="r")
    absd = np.load(out_dir / "absdiff.npy", mmap_mode="r")
    scale = max(float(absd[rows].max()), 1e-6)
    grid = np.stack(
        [np.stack([images.rows(r, r + 1)[0], recons[r], cfs[r], absd[r] / scale]) for r in rows]
    )
    labels = [f"{table.at[r, 'class_name']}\nsum {table.at[r, 'sum_abs']:.1f}" for r in rows]
    method, scale_value = table.at[0, "method"], scale_name(table.at[0, "scale"])
    columns = ["original", "reconstruction", f"toward {target_class}", f"|diff| (x{1 / scale:.1f})"]
    write_labelled_grid(
        path,
        [Panel(f"{method}, scale {scale_value}", grid, labels, columns)],
    )
