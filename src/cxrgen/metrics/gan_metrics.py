"""Evaluate synthetic sets: ``evaluate_gan({"stargan": d1, "dcgan": d2}, store, split, out, cfg)``.

Metrics are registered by name (:data:`METRICS`) and all land in one tidy table
``gan_metrics.parquet`` with columns metric, network, model, mode, source, target, value, n,
status. ``network`` names the network (and so the protocol) that made the row
(:func:`network_of`), e.g. 'pytorch-fid InceptionV3 (TF FID weights)' or 'torchvision
inception_v3 (ImageNet, StarGAN v2 protocol)'; an earlier feature block (``fid_dims`` < 2048)
is named in it too.

- ``fid`` / ``fid_stargan_v2`` / ``fid_cxr``: Frechet distance between the generated images of
  one task (StarGAN: mode x source domain x target domain; DCGAN: class) and the real images
  of the target domain in ``real_split`` (StarGAN v2 compares with the training images), in the
  feature space of pytorch-fid's TF FID Inception (``fid``), of torchvision's ImageNet Inception
  as StarGAN v2's metrics code uses it (``fid_stargan_v2``, the protocol of the paper's Table
  1), or of the chest X-ray classifier (``fid_cxr``). Rows with source ``mean`` are the mean
  over source domains (the paper's per-target FID) and target ``mean`` the mean over all
  tasks; the DCGAN row with target ``all`` compares the whole generated set with all real
  images (the paper's baseline FID). n = generated images.
- ``lpips``: mean pairwise LPIPS among the outputs of one source image, averaged over the
  source images of a task (n = source images), then over sources per target.

status: ``ok``; ``random_weights`` (evaluation networks randomly initialised, numbers not
comparable); ``unavailable`` (pretrained weights or classifier missing and
``metrics_optional``); ``too_few_images`` / ``numerical_error`` (value NaN). Also written:
``gan_metrics.png`` (this run, with the paper's Table 1 beside the rows of the same protocol
only: :func:`cxrgen.metrics.paper.paper_comparison`) and ``provenance.json``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cxrgen import io, provenance
from cxrgen.config import check
from cxrgen.data.classes import read_classes
from cxrgen.data.store import CLASSES_FILE, IMAGES, INDEX_FILE, array_path, load_split
from cxrgen.devices import check_device_name, resolve_device
from cxrgen.errors import DataError
from cxrgen.html_tables import write_html_table
from cxrgen.metrics.fid import (
    PYTORCH_FID_NETWORK,
    STARGAN_V2_NETWORK,
    ClassifierFeatures,
    ImageNetInceptionFeatures,
    InceptionFeatures,
    extract,
    gaussian_stats,
)
from cxrgen.metrics.gan_table import (
    COLUMNS,
    NO_SOURCE,
    _row,
    add_means,
    frechet_rows,
    task_groups,
)
from cxrgen.metrics.lpips_diversity import LPIPS_NETWORK, PairwiseLPIPS, diversity_per_group
from cxrgen.metrics.paper import paper_comparison, write_comparison_figure
from cxrgen.metrics.weights import (
    WeightsMissing,
    build_inception,
    build_lpips,
    build_torchvision_inception,
)
from cxrgen.training.seeding import Purpose, derive_seed

log = logging.getLogger(__name__)

FID_DIMS = (64, 192, 768, 2048)


@dataclass(frozen=True)
class GanMetricsConfig:
    """FID / LPIPS evaluation of generated sets.

    metrics: any of 'fid' (pytorch-fid's TF FID Inception), 'fid_stargan_v2' (torchvision's
        ImageNet Inception as StarGAN v2 measures FID: the protocol of the paper's Table 1),
        'fid_cxr' (noise-aware classifier features at ``cxr_timestep``; needs the classifier
        folder), 'lpips' (StarGAN outputs only).
    real_split: the split whose images of the target domain are the reference distribution.
    fid_dims: feature block of both Inception networks (2048 = standard FID; 64 / 192 / 768 as
        pytorch-fid's --dims, for quick smoke runs: the 2048-d matrix square root takes ~1 min
        on a CPU). Below 2048, 'fid_stargan_v2' is no longer the paper's protocol and its
        rows say so in ``network``.
    max_real_per_domain: cap on real images per domain (a seeded subset; 0 = all).
    batch_size: images per feature-extraction batch (and LPIPS pairs per batch).
    metrics_optional: missing pretrained weights (or classifier) give status 'unavailable'
        instead of an error. random_weights: build Inception / AlexNet with seeded random
        weights (smoke runs; status 'random_weights'). weights_dir: a folder searched before
        $TORCH_HOME/hub/checkpoints for the weight files.
    lpips_min_size: images smaller than this are upsampled for LPIPS. seed: subsets / random
        weights. device: auto / cpu / cuda.
    """

    metrics: tuple[str, ...] = ("fid", "fid_stargan_v2", "fid_cxr", "lpips")
    fid_dims: int = 2048
    real_split: str = "train"
    max_real_per_domain: int = 0
    batch_size: int = 50
    metrics_optional: bool = False
    random_weights: bool = False
    weights_dir: str = ""
    lpips_min_size: int = 64
    cxr_timestep: int = 0
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        unknown = sorted(set(self.metrics) - set(METRICS))
        check(not unknown, f"unknown metric(s) {unknown}; choose from {sorted(METRICS)}")
        check(self.fid_dims in FID_DIMS, f"fid_dims must be one of {FID_DIMS}, got {self.fid_dims}")
        check(self.max_real_per_domain >= 0, "max_real_per_domain must be >= 0 (0 = all)")
        check(self.batch_size >= 1, "batch_size must be >= 1")
        check(self.lpips_min_size >= 32, "lpips_min_size must be >= 32 (AlexNet's pooling)")
        check(self.cxr_timestep >= 0, "cxr_timestep must be >= 0")
        check(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        check_device_name(self.device)


@dataclass
class GeneratedSet:
    index: pd.DataFrame
    images: np.ndarray  # memmap (N, H, W)


@dataclass
class EvalContext:
    sets: dict[str, GeneratedSet]
    real_images: np.ndarray
    real_rows: dict[str, np.ndarray]  # target domain -> store rows of the real images
    cfg: GanMetricsConfig
    device: torch.device
    classifier_dir: Path | None
    progress: bool


def network_of(metric: str, cfg: GanMetricsConfig) -> str:
    """The ``network`` column of a metric's rows: the network and protocol that made them."""
    block = f", {cfg.fid_dims}-d block" if cfg.fid_dims != 2048 else ""
    if metric == "fid":
        return PYTORCH_FID_NETWORK.replace(")", f"{block})") if block else PYTORCH_FID_NETWORK
    if metric == "fid_stargan_v2":
        if not block:
            return STARGAN_V2_NETWORK
        return f"torchvision inception_v3 (ImageNet{block}: not the StarGAN v2 protocol)"
    if metric == "fid_cxr":
        return f"cxrgen noise-aware classifier (penultimate features, t={cfg.cxr_timestep})"
    if metric == "lpips":
        return LPIPS_NETWORK
    raise KeyError(metric)


def _frechet_metric(ctx: EvalContext, extractor, metric: str, status: str) -> list[dict]:
    def features(array, rows, what):
        return extract(extractor, array, rows, ctx.cfg.batch_size, what, ctx.progress)

    real_features = {
        d: features(ctx.real_images, r, f"{metric} real {d}") for d, r in ctx.real_rows.items()
    }
    real = {d: gaussian_stats(f) for d, f in real_features.items()}
    real_all = gaussian_stats(np.concatenate(list(real_features.values())))
    rows = []
    for name, gen in ctx.sets.items():
        groups = [g for g in task_groups(gen.index) if g[2] in real]
        rows += frechet_rows(
            metric,
            name,
            groups,
            lambda r, gen=gen, name=name: features(gen.images, r, f"{metric} {name}"),
            real,
            real_all,
            status,
        )
    return rows


def fid_metric(ctx: EvalContext) -> list[dict]:
    extra = [ctx.cfg.weights_dir] if ctx.cfg.weights_dir else []
    net = build_inception(extra, ctx.cfg.random_weights, ctx.cfg.seed, ctx.cfg.fid_dims)
    status = "random_weights" if ctx.cfg.random_weights else "ok"
    return _frechet_metric(ctx, InceptionFeatures(net, ctx.device), "fid", status)


def fid_stargan_v2_metric(ctx: EvalContext) -> list[dict]:
    """FID as StarGAN v2's metrics code computes it (torchvision's ImageNet Inception)."""
    extra = [ctx.cfg.weights_dir] if ctx.cfg.weights_dir else []
    net = build_torchvision_inception(extra, ctx.cfg.random_weights, ctx.cfg.seed)
    extractor = ImageNetInceptionFeatures(net, ctx.device, ctx.cfg.fid_dims)
    status = "random_weights" if ctx.cfg.random_weights else "ok"
    return _frechet_metric(ctx, extractor, "fid_stargan_v2", status)


def fid_cxr_metric(ctx: EvalContext) -> list[dict]:
    from cxrgen.classifier.model import load_classifier

    if ctx.classifier_dir is None:
        raise WeightsMissing("fid_cxr needs the noise-aware classifier folder (classifier_dir)")
    extractor = ClassifierFeatures(
        load_classifier(ctx.classifier_dir), ctx.device, ctx.cfg.cxr_timestep
    )
    return _frechet_metric(ctx, extractor, "fid_cxr", "ok")


def lpips_metric(ctx: EvalContext) -> list[dict]:
    extra = [ctx.cfg.weights_dir] if ctx.cfg.weights_dir else []
    net = build_lpips(extra, ctx.cfg.random_weights, ctx.cfg.seed)
    metric = PairwiseLPIPS(net, ctx.device, ctx.cfg.lpips_min_size, ctx.cfg.batch_size)
    status = "random_weights" if ctx.cfg.random_weights else "ok"
    rows = []
    for name, gen in ctx.sets.items():
        for mode, source, target, members in task_groups(gen.index):
            if source == NO_SOURCE:
                continue  # diversity among outputs of one source image: translators only
            sub = gen.index.set_index("row").loc[members]
            per_source = [g.index.to_numpy() for _, g in sub.groupby("source_row", sort=False)]
            values = diversity_per_group(metric, gen.images, per_source)
            ok = np.isfinite(values)
            st = status if ok.any() else "too_few_images"
            value = float(values[ok].mean()) if ok.any() else float("nan")
            rows.append(_row("lpips", name, mode, source, target, value, len(per_source), st))
    return rows


METRICS: dict[str, Callable[[EvalContext], list[dict]]] = {
    "fid": fid_metric,
    "fid_stargan_v2": fid_stargan_v2_metric,
    "fid_cxr": fid_cxr_metric,
    "lpips": lpips_metric,
}


def unavailable_rows(ctx: EvalContext, metric: str) -> list[dict]:
    rows = []
    for name, gen in ctx.sets.items():
        groups = list(task_groups(gen.index))
        if metric == "lpips":
            groups = [g for g in groups if g[1] != NO_SOURCE]
        for mode, source, target, members in groups:
            n = len(members)
            if metric == "lpips":  # n counts source images
                n = gen.index.set_index("row").loc[members, "source_row"].nunique()
            rows.append(_row(metric, name, mode, source, target, np.nan, n, "unavailable"))
        for mode in {g[0] for g in groups if g[1] == NO_SOURCE}:
            n = int(sum(len(g[3]) for g in groups if g[0] == mode))
            rows.append(_row(metric, name, mode, NO_SOURCE, "all", np.nan, n, "unavailable"))
    return rows


def _real_rows(store_dir: Path, split_dir: Path, cfg: GanMetricsConfig):
    real = load_split(store_dir, split_dir, cfg.real_split)
    out = {}
    for c, name in enumerate(real.classes):
        rows = np.sort(real.rows[real.labels == c])
        if cfg.max_real_per_domain and len(rows) > cfg.max_real_per_domain:
            rng = np.random.default_rng(derive_seed(cfg.seed, Purpose.VALIDATE, c))
            rows = np.sort(rng.choice(rows, cfg.max_real_per_domain, replace=False))
        out[name] = rows
    return real, out


def evaluate_gan(
    generated: Mapping[str, str | Path],
    store_dir: str | Path,
    split_dir: str | Path,
    out_dir: str | Path,
    cfg: GanMetricsConfig,
    classifier_dir: str | Path | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Evaluate each generated set (name -> folder of generate_synthetic); return the table."""
    store_dir, split_dir, out_dir = Path(store_dir), Path(split_dir), Path(out_dir)
    real, real_rows = _real_rows(store_dir, split_dir, cfg)
    sets = {}
    for name, folder in generated.items():
        folder = Path(folder)
        if not (folder / INDEX_FILE).exists():
            raise DataError(f"no generated set in {folder} ({INDEX_FILE}): run generation first")
        if read_classes(folder / CLASSES_FILE) != list(real.classes):
            raise DataError(f"{folder} was generated for other classes than {list(real.classes)}")
        sets[name] = GeneratedSet(
            pd.read_parquet(folder / INDEX_FILE), np.load(array_path(folder, IMAGES), mmap_mode="r")
        )
    ctx = EvalContext(
        sets,
        np.load(real.images_path, mmap_mode="r"),
        real_rows,
        cfg,
        resolve_device(cfg.device),
        Path(classifier_dir) if classifier_dir else None,
        progress,
    )
    rows: list[dict] = []
    for metric in cfg.metrics:
        try:
            part = METRICS[metric](ctx)
        except WeightsMissing as exc:
            if not cfg.metrics_optional:
                raise
            log.warning("%s unavailable: %s", metric, exc)
            part = unavailable_rows(ctx, metric)
        network = network_of(metric, cfg)
        rows += [{**row, "network": network} for row in part]
    table = add_means(pd.DataFrame(rows, columns=COLUMNS))
    log.info(
        "GAN metrics:\n%s", table[table["source"].isin(["mean", NO_SOURCE])].to_string(index=False)
    )
    matched = paper_comparison(table)
    if matched.empty:
        log.info("No row of this run has the protocol of the paper's Table 1 (fid_stargan_v2 at "
                 "2048 dims, lpips): the paper's values are not set beside any")  # fmt: skip
    else:
        shown = ["metric", "model", "target", "value", "status", "paper", "paper_entry"]
        log.info("Beside the paper's Table 1 (same protocol):\n%s", matched[shown].to_string())
    io.write_parquet(out_dir / "gan_metrics.parquet", table)
    write_html_table(
        out_dir / "gan_metrics.html", table, "FID and LPIPS of the synthetic sets",
        "One row per metric, model, mode, source and target domain; 'network' names the "
        "network (protocol) that made the row; 'mean' rows average over source domains. The "
        "figure beside sets the paper's Table 1 only beside the StarGAN v2 protocol rows "
        "(fid_stargan_v2, latent-guided, mean over sources) and LPIPS.",
    )  # fmt: skip
    write_comparison_figure(out_dir / "gan_metrics.png", table)
    provenance.write(
        out_dir / "provenance.json",
        "evaluate_gan",
        cfg,
        generated={k: str(v) for k, v in generated.items()},
        store=str(store_dir),
        split=str(split_dir),
        classifier=str(classifier_dir) if classifier_dir else None,
        real_counts={k: len(v) for k, v in real_rows.items()},
    )
    return table
