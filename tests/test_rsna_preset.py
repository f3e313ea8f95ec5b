"""The paper-scale RSNA preset proven to run: presets/rsna.yaml's networks on 256x256 phantoms.

Marked slow (the default run skips it; ``uv run pytest -m slow tests/test_rsna_preset.py -s``).
The workflow runs with ``config.yaml`` + ``presets/rsna.yaml`` + an overlay written here, which
changes only what decides the run time, never a network's shape: RSNA-layout DICOM phantoms
(a few dozen patients, native 256-320 px, stored at the preset's 256) instead of the download,
2 optimizer steps of every trained model, batches that fit a small CPU, 2 DDIM steps and the
first scale of each guidance method. Train -> invert -> counterfactual -> evaluate (+ figures)
then meets every shape, memory and config error that only the paper-scale networks hit
(attention at 32 and 16 px, six UNet levels, StarGAN's four downsamplings at 256 px). Each
stage's peak memory is Snakemake's ``benchmark:`` record; the table is printed and copied to
results/test-artifacts/ (BENCHMARKS.md, "The RSNA preset at paper scale").
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from workflow_helpers import ROOT, overlay

pytestmark = pytest.mark.slow

PRESET = ROOT / "presets" / "rsna.yaml"
SIZE = 256  # the preset's preprocess.size: the shape every array below must have
# a generous bound on any one stage's peak resident memory (all its processes together)
MAX_RSS_MB = 16_000
ARTIFACTS = ROOT / "results" / "test-artifacts"
# the sections of trained models: 2 optimizer steps each, checkpoints and logs to match
SHORT_TRAINING = {"max_steps": 2, "warmup_steps": 1, "checkpoint_every": 2, "log_every": 1}


def merged(*paths: Path) -> dict:
    """The config Snakemake builds from these files (later files' mappings merged in)."""

    def merge(base: dict, top: dict) -> dict:
        out = dict(base)
        for key, value in top.items():
            both = isinstance(value, dict) and isinstance(out.get(key), dict)
            out[key] = merge(out[key], value) if both else value
        return out

    config: dict = {}
    for path in paths:
        config = merge(config, yaml.safe_load(path.read_text()) or {})
    return config


def preset_scales(rsna: dict) -> dict[str, list[float]]:
    """The first scale of each of the preset's methods (+ msr's first pass, which it reads)."""
    scales = {m: [v[0]] for m, v in rsna["guidance_scales"].items() if v}
    if "msr" in scales:
        method, _, scale = rsna["counterfactual"].get("first_pass", "cg/10").partition("/")
        scales[method] = sorted({*scales.get(method, []), float(scale)})
    return scales


def rsna_overlay(base: dict) -> dict:
    """Phantoms, 2 training steps, small batches, few DDIM steps: the preset's networks kept."""
    rsna = base["datasets"]["rsna"]
    ds: dict = {
        "source": "phantoms",
        "phantoms": {
            "seed": 0,
            "n_patients": 24,
            "max_images_per_patient": 1,
            "min_size": 256,
            "max_size": 320,
            "n_corrupt": 1,
        },
        "diffusion": {
            **SHORT_TRAINING,
            "batch_size": 2,
            "num_workers": 2,
            "sample_every": 0,
            "n_sample_per_class": 1,
            "sample_steps": 2,
        },
        "classifier": {
            **SHORT_TRAINING,
            "batch_size": 2,
            "num_workers": 2,
            "valid_bins": 2,
            "valid_batch_size": 4,
        },
        "invert": {"steps": 2, "batch_size": 4},
        "counterfactual": {"batch_size": 4},
        "evaluate": {"n_boot": 100, "batch_size": 4},
        "guidance_scales": preset_scales(rsna),
    }
    if "stargan" in rsna:
        ds["stargan"] = {**SHORT_TRAINING, "batch_size": 2, "ds_iter": 2, "n_sample_per_domain": 1}
    for name in ("dcgan", "lungseg"):  # any other model the merged config trains on rsna
        if name in rsna:
            ds[name] = {**SHORT_TRAINING, "batch_size": 2}
    datasets = {"rsna": ds}
    source = rsna.get("lung_masks_from")  # a lung segmenter trained on another data set
    if source and "lungseg" in base["datasets"].get(source, {}):
        datasets[source] = {"lungseg": {**SHORT_TRAINING, "batch_size": 2}}
    return {"datasets": datasets}


def targets(config: dict) -> list[str]:
    """Every rsna model, the latents, each counterfactual, the evaluation and its figures."""
    rsna = config["datasets"]["rsna"]
    models = [m for m in ("diffusion", "classifier", "stargan", "dcgan") if m in rsna]
    out = [f"results/models/rsna/{m}/loss.parquet" for m in models]
    out += [
        "results/latents/rsna/latents.npy",
        "results/metrics/rsna/counterfactual/summary.parquet",
        "results/figures/rsna/counterfactual/fig3.png",
    ]
    if rsna.get("lung_masks_from"):
        out.append("results/lung_masks/rsna/lung_masks.npy")
    return out


def failed_logs(workdir: Path) -> str:
    """The tails of the job logs that hold a traceback (what a failed run needs to say)."""
    logs = sorted((workdir / "results" / "logs").rglob("*.log"), key=lambda p: p.stat().st_mtime)
    tails = [
        f"--- {p.relative_to(workdir)}\n{p.read_text(errors='replace')[-4000:]}"
        for p in logs
        if "Traceback" in p.read_text(errors="replace")
    ]
    return "\n".join(tails[-2:])


@pytest.fixture(scope="module")
def rsna_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("rsna_preset")
    base = merged(ROOT / "config.yaml", PRESET)
    top = overlay(workdir / "rsna_overlay.yaml", rsna_overlay(base))
    config = merged(ROOT / "config.yaml", PRESET, top)
    cmd = [
        sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
        "--directory", str(workdir), "--cores", "2", *targets(config),
        "--configfile", str(PRESET), str(top),  # no smoke preset: its small nets would leak in
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3 * 3600)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise AssertionError(
            f"the RSNA preset run failed ({proc.returncode}) after {wall:.0f} s:\n"
            f"{proc.stderr[-6000:]}\n{failed_logs(workdir)}"
        )
    # the largest single process of the run (exact, where the benchmark records are sampled)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return workdir, config, wall, peak_mb


def stage_table(workdir: Path) -> pd.DataFrame:
    """One row per job: rule, job, wall s, cpu s, max_rss / max_uss MB (Snakemake benchmark)."""
    rows = []
    for path in sorted((workdir / "results" / "benchmarks").rglob("*.tsv")):
        record = pd.read_csv(path, sep="\t").iloc[-1]
        rows.append(
            {
                "rule": path.parent.name,
                "job": path.stem,
                "wall_s": float(record["s"]),
                "cpu_s": float(record["cpu_time"]),
                "max_rss_mb": float(record["max_rss"]),
                "max_uss_mb": float(record["max_uss"]),
            }
        )
    return pd.DataFrame(rows)


def test_stage_memory_and_time(rsna_run):
    workdir, config, wall, peak_mb = rsna_run
    table = stage_table(workdir)
    text = table.to_string(index=False, float_format="{:.0f}".format)
    summary = (
        f"RSNA preset at paper scale: {wall:.0f} s wall, largest single process "
        f"{peak_mb:.0f} MB peak RSS; load average at the end "
        f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}\n{text}\n"
    )
    print("\n" + summary)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "rsna_preset_benchmarks.md").write_text(summary)
    for rule in ("train_diffusion", "train_classifier", "invert", "counterfactual", "evaluate"):
        assert rule in set(table["rule"]), f"no benchmark record of {rule}"
    if "stargan" in config["datasets"]["rsna"]:
        assert "train_stargan" in set(table["rule"])
    assert table["max_rss_mb"].notna().all(), table
    heavy = table[table["max_rss_mb"] >= MAX_RSS_MB]
    assert heavy.empty, f"stages above {MAX_RSS_MB} MB:\n{heavy}"
    assert peak_mb < MAX_RSS_MB


def test_models_have_the_preset_shapes(rsna_run):
    workdir, config, _, _ = rsna_run
    rsna = config["datasets"]["rsna"]
    models = workdir / "results" / "models" / "rsna"
    unet = json.loads((models / "diffusion" / "unet" / "config.json").read_text())
    assert unet["sample_size"] in (SIZE, [SIZE, SIZE])
    assert list(unet["block_out_channels"]) == list(rsna["diffusion"]["block_out_channels"])
    assert unet["layers_per_block"] == rsna["diffusion"]["layers_per_block"]
    assert unet["num_class_embeds"] == 3  # Normal, Lung Opacity + the null class
    # about 115M float32 parameters (the preset's comment), saved as EMA weights
    weights = models / "diffusion" / "unet" / "diffusion_pytorch_model.safetensors"
    assert weights.stat().st_size > 4e8
    assert (models / "classifier" / "model.safetensors").stat().st_size > 5e7  # about 28M
    assert len(pd.read_parquet(models / "diffusion" / "loss.parquet")) >= 1
    if "stargan" in rsna:
        gan = json.loads((models / "stargan" / "config.json").read_text())
        generator, encoder = section_with(gan, "n_down"), section_with(gan, "image_size")
        want = rsna["stargan"]
        assert generator["n_down"] == want["g_downsamplings"], gan
        for key in ("base_dim", "max_conv_dim", "style_dim"):
            assert generator[key] == want[key], (key, gan)
        assert list(encoder["image_size"]) == [SIZE, SIZE], gan


def section_with(tree, key: str) -> dict:
    """The first mapping in a nested JSON document that has ``key``."""
    if isinstance(tree, dict):
        if key in tree:
            return tree
        tree = list(tree.values())
    for item in tree if isinstance(tree, list) else ():
        found = section_with(item, key)
        if found:
            return found
    return {}


def test_latents_and_counterfactuals_are_256(rsna_run):
    workdir, config, _, _ = rsna_run
    res = workdir / "results"
    images = np.load(res / "data" / "rsna" / "images.npy", mmap_mode="r")
    assert images.shape[1:] == (SIZE, SIZE) and images.dtype == np.uint8  # the preset's dtype
    split = pd.read_parquet(res / "splits" / "rsna" / "split.parquet")
    evaluated = split[split["split"].isin(["calibration", "test"])]
    n = len(evaluated)
    assert n >= 4
    latents = np.load(res / "latents" / "rsna" / "latents.npy", mmap_mode="r")
    recon = np.load(res / "latents" / "rsna" / "reconstructions.npy", mmap_mode="r")
    assert latents.shape == recon.shape == (n, SIZE, SIZE)
    assert np.isfinite(latents).all() and np.isfinite(recon).all()
    for method, scales in config["datasets"]["rsna"]["guidance_scales"].items():
        for scale in scales:
            folder = res / "counterfactuals" / "rsna" / method / f"{float(scale):g}"
            for name in ("counterfactuals", "diff", "absdiff"):
                array = np.load(folder / f"{name}.npy", mmap_mode="r")
                assert array.shape == (n, SIZE, SIZE), (method, scale, name, array.shape)
                assert np.isfinite(array).all(), (method, scale, name)
            assert len(pd.read_parquet(folder / "scores.parquet")) == n


def test_evaluation_ran(rsna_run):
    workdir, config, _, _ = rsna_run
    metrics = workdir / "results" / "metrics" / "rsna" / "counterfactual"
    summary = pd.read_parquet(metrics / "summary.parquet")
    assert len(summary) >= 1
    detection = pd.read_parquet(metrics / "detection.parquet")
    methods = set(config["datasets"]["rsna"]["guidance_scales"])
    assert methods <= set(detection["method"]), (methods, set(detection["method"]))
    assert (workdir / "results" / "figures" / "rsna" / "counterfactual" / "fig3.png").exists()
