"""Wall time and peak memory of the ``evaluate`` and ``figures`` stages at RSNA validation size.

Builds, in a scratch folder, the inputs the two stages read, in the formats the real stages
write them, then runs ``cxrgen evaluate`` and ``cxrgen figures`` each as a child process and
reports its wall time, CPU time and peak resident memory (the child's own ``ru_maxrss`` from
``os.wait4``; /proc/<pid>/status is polled for the anonymous and file-backed parts: memory-
mapped arrays that were read count as resident file pages). Building the inputs is not timed.

The inputs (an RSNA Pneumonia Detection layout, the paper's 80/10/10 split):

* store (``images.npy`` uint8 as presets/rsna.yaml writes it, ``index.parquet`` with the
  :data:`~cxrgen.data.store.INDEX_SCHEMA` columns and boxes on the stored grid,
  ``classes.json``): Normal, Lung Opacity and "No Lung Opacity / Not Normal" in RSNA's
  proportions (8,851 / 6,012 / 11,821); only the held-out rows' pixels are written (the other
  rows are never read by these stages and stay a sparse hole in the file);
* split (``split.parquet``, ``classes.json``): ``--images`` held-out images (default 2,973,
  the paper's validation size; classes drawn with its 1,770 Normal / 1,203 Lung Opacity
  share, 1,200 Lung Opacity at seed 0), halved patient-level and stratified into
  calibration and test; patients have 1-3 images (RSNA has one per patient; follow-ups make
  the patient bootstrap do real grouping); the rest of the kept images are ``train``;
* latents (``latents.npy``, ``reconstructions.npy`` float32, ``index.parquet`` from
  :func:`~cxrgen.data.store.image_set` plus the inversion's columns, ``trajectory.json``);
* counterfactual folders ``cf/{method}/{scale}`` (``counterfactuals.npy``, ``diff.npy``,
  ``absdiff.npy`` float32, ``scores.parquet`` from the real
  :func:`~cxrgen.counterfactual.scores.difference_scores`) for ``--methods`` x ``--scales``
  (default cfg 1/3/5 and cg 10/30/100, the RSNA preset's grid).

Images: a chest-like template (two dark lung fields, a bright mediastinum) with per-image
contrast, a smooth random field and noise; each opacity image carries a soft opacity filling
each of its 1-3 boxes. Each counterfactual is the reconstruction (the image plus a smooth and
a white inversion error) with a scale-dependent fraction of each opacity removed and a
scale-dependent smooth change elsewhere, so detection and localisation have signal without
being perfect (half of the images, of either class, also lose a spurious opacity-like patch).
``--ground-truth`` adds the phantom-only inputs (``healthy.npy``,
``lesion_masks.npy``, ``lung_masks.npy`` and RALO scores in the index), which switch on the
ground-truth and severity tables. No classifier is given (its reference row and Grad-CAM are
model inference, a GPU pass in the RSNA preset, not the statistics measured here).

    uv run python benchmarks/bench_evaluate.py                          # 2,973 x 256^2
    uv run python benchmarks/bench_evaluate.py --images 200 --size 64   # smoke run
    uv run python benchmarks/bench_evaluate.py --ground-truth           # + phantom arrays

Needs about 17 GB of free disk at the default size (six settings x three float32 maps of
0.78 GB), 20 GB with ``--ground-truth``; the folder is removed afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cxrgen import io
from cxrgen.counterfactual.ddim import Trajectory
from cxrgen.counterfactual.invert import InvertConfig, trajectory_settings
from cxrgen.counterfactual.scores import difference_scores
from cxrgen.data.classes import write_classes
from cxrgen.data.geometry import dequantize, quantize
from cxrgen.data.latents import LATENTS, RECONSTRUCTIONS, write_trajectory
from cxrgen.data.store import (
    CLASSES_FILE,
    INDEX_FILE,
    INDEX_SCHEMA,
    RALO_COLUMNS,
    SPLIT_FILE,
    image_set,
    write_table,
)

NORMAL, OPACITY, OTHER = "Normal", "Lung Opacity", "No Lung Opacity / Not Normal"
CLASSES = [NORMAL, OPACITY]
RSNA_COUNTS = {NORMAL: 8851, OPACITY: 6012, OTHER: 11821}  # stage 2 train labels
HELD_OUT = 0.2  # the paper's validation share of the kept images (1,770 + 1,203 = 2,973)
PATIENT_SIZES, PATIENT_P = (1, 2, 3), (0.7, 0.2, 0.1)
BOX_P = (0.45, 0.5, 0.05)  # 1, 2 or 3 boxes per opacity image
DEFAULT_GRID = ["cfg=1,3,5", "cg=10,30,100"]
GB = 1e9


# --- the layout ----------------------------------------------------------------------------


def held_out_patients(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """``n`` held-out images: patient, class and split (calibration / test, patient-level,
    stratified by the patient's majority class, about half each)."""
    sizes = []
    while sum(sizes) < n:
        sizes.append(int(rng.choice(PATIENT_SIZES, p=PATIENT_P)))
    sizes[-1] -= sum(sizes) - n
    share = RSNA_COUNTS[OPACITY] / (RSNA_COUNTS[OPACITY] + RSNA_COUNTS[NORMAL])
    keep = 0.85  # an image has its patient's class 85% of the time (follow-ups differ)
    positive_patient = (share - (1 - keep)) / (2 * keep - 1)  # so that images keep RSNA's share
    rows = []
    for p, size in enumerate(sizes):
        stratum = rng.random() < positive_patient
        for _ in range(size):
            positive = stratum if rng.random() < keep else not stratum
            rows.append((f"h{p:05d}", OPACITY if positive else NORMAL, int(stratum)))
    table = pd.DataFrame(rows, columns=["patient_id", "class_name", "stratum"])
    split = {}
    for _, group in table.groupby("stratum"):
        patients = group["patient_id"].unique()
        patients = patients[rng.permutation(len(patients))]
        counts = group.groupby("patient_id").size().loc[patients].to_numpy()
        mid = (np.cumsum(counts) - counts / 2) / counts.sum()
        split.update(zip(patients, np.where(mid < 0.5, "calibration", "test"), strict=True))
    table["split"] = table["patient_id"].map(split)
    return table.drop(columns="stratum")


def random_boxes(size: int, rng: np.random.Generator) -> list[list[float]]:
    """1-3 RSNA-like [x, y, w, h] boxes on a size x size grid, each inside one lung field."""
    boxes = []
    for side in rng.permutation(2)[: rng.choice(3, p=BOX_P) + 1]:
        w, h = rng.uniform(0.12, 0.28) * size, rng.uniform(0.18, 0.42) * size
        cx = (0.3 if side == 0 else 0.7) * size + rng.uniform(-0.06, 0.06) * size
        cy = rng.uniform(0.35, 0.65) * size
        boxes.append([round(cx - w / 2, 1), round(cy - h / 2, 1), round(w, 1), round(h, 1)])
    return boxes


def make_layout(n: int, size: int, seed: int, ground_truth: bool) -> pd.DataFrame:
    """The store index (INDEX_SCHEMA columns, shuffled rows) with the split of every row."""
    rng = np.random.default_rng(seed)
    held = held_out_patients(n, rng)
    kept = round(n / HELD_OUT)
    n_other = round(kept * RSNA_COUNTS[OTHER] / (RSNA_COUNTS[NORMAL] + RSNA_COUNTS[OPACITY]))
    n_train = kept - n
    positive_share = RSNA_COUNTS[OPACITY] / (RSNA_COUNTS[OPACITY] + RSNA_COUNTS[NORMAL])
    train = pd.DataFrame(
        {
            "patient_id": [f"t{i:06d}" for i in range(n_train)],
            "class_name": np.where(rng.random(n_train) < positive_share, OPACITY, NORMAL),
            "split": "train",
        }
    )
    other = pd.DataFrame(
        {"patient_id": [f"o{i:06d}" for i in range(n_other)], "class_name": OTHER,
         "split": "excluded"}
    )  # fmt: skip
    table = pd.concat([held, train, other], ignore_index=True)
    table = table.iloc[rng.permutation(len(table))].reset_index(drop=True)
    table.insert(0, "row", np.arange(len(table)))
    table.insert(1, "image_id", [f"{i:08x}-rsna" for i in rng.integers(0, 2**32, len(table))])
    table["image_id"] = table["image_id"] + "-" + table["row"].astype(str)
    positive = (table["class_name"] == OPACITY).to_numpy()
    table["boxes"] = [random_boxes(size, rng) if p else [] for p in positive]
    if ground_truth:  # RALO extent / opacity per lung from the boxes' areas and sides
        for side, name in ((0, "right"), (1, "left")):
            area = np.array(
                [sum(b[2] * b[3] for b in boxes if (b[0] + b[2] / 2 < size / 2) == (side == 0))
                 for boxes in table["boxes"]]
            ) / (0.2 * size * size)  # fmt: skip
            table[f"extent_{name}"] = np.clip(np.ceil(4 * area), 0, 4).astype(float)
            table[f"opacity_{name}"] = np.clip(table[f"extent_{name}"] - rng.integers(0, 2), 0, 4)
        table["extent_total"] = table["extent_right"] + table["extent_left"]
        table["opacity_total"] = table["opacity_right"] + table["opacity_left"]
    return table


def write_store_tables(store: Path, split_dir: Path, table: pd.DataFrame, size: int) -> None:
    store_classes = sorted(RSNA_COUNTS)
    records = [
        dict(row=int(r.row), image_id=r.image_id, patient_id=r.patient_id,
             file=f"stage_2_train_images/{r.image_id}.dcm",
             label=store_classes.index(r.class_name), class_name=r.class_name,
             target=int(r.class_name == OPACITY), n_boxes=len(r.boxes),
             boxes=[[float(v) for v in b] for b in r.boxes], orig_rows=1024, orig_cols=1024,
             photometric="MONOCHROME2", transfer_syntax="JPEG Baseline (Process 1)",
             file_format="DICOM", bits_stored=8, n_frames=1, source_split=None)
        for r in table.itertuples()
    ]  # fmt: skip
    write_table(store / INDEX_FILE, records, INDEX_SCHEMA)
    if "extent_total" in table:  # severity columns appended, as the preprocess stage does
        index = pd.read_parquet(store / INDEX_FILE)
        for c in RALO_COLUMNS:
            index[c] = table[c].to_numpy(float)
        io.write_parquet(store / INDEX_FILE, index)
    write_classes(store / CLASSES_FILE, store_classes)
    kept = table["class_name"].isin(CLASSES)
    split = table[["row", "image_id", "patient_id", "class_name"]].copy()
    split["label"] = np.where(kept, table["class_name"].map({c: i for i, c in enumerate(CLASSES)}),
                              -1).astype(np.int64)  # fmt: skip
    split["split"] = table["split"]
    io.write_parquet(split_dir / SPLIT_FILE, split)
    write_classes(split_dir / CLASSES_FILE, CLASSES)


# --- the pixels ------------------------------------------------------------------------------


def template(size: int) -> tuple[np.ndarray, np.ndarray]:
    """A chest-like [0, 1] image and its lung labels (1: image left = right lung, 2: left)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    lungs = np.zeros((size, size), np.uint8)
    image = 0.55 + 0.15 * yy
    for label, cx in ((1, 0.3), (2, 0.7)):
        r = ((xx - cx) / 0.16) ** 2 + ((yy - 0.5) / 0.3) ** 2
        image -= 0.3 / (1 + np.exp(np.minimum(12 * (r - 1), 50)))
        lungs[r < 1] = label
    image += 0.15 * np.exp(-(((xx - 0.5) / 0.07) ** 2))  # mediastinum
    return image.astype(np.float32), lungs


def smooth_field(n: int, size: int, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """(n, size, size) sums of three random low-frequency cosines of the given amplitude."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = np.zeros((n, size, size), np.float32)
    for _ in range(3):
        fx, fy = (rng.uniform(-3, 3, (n, 1, 1)).astype(np.float32) for _ in range(2))
        phase = rng.uniform(0, 2 * np.pi, (n, 1, 1)).astype(np.float32)
        out += np.cos(2 * np.pi * (fx * xx + fy * yy) + phase)
    return out * np.float32(amplitude / 3)


def opacity(boxes: list, size: int, strength: float) -> np.ndarray:
    """A soft opacity filling each box (a raised-cosine bump), peak ``strength``."""
    out = np.zeros((size, size), np.float32)
    centres = np.arange(size, dtype=np.float32) + 0.5
    for x, y, w, h in boxes:
        u = np.clip((centres - x) / max(w, 1), 0, 1)
        v = np.clip((centres - y) / max(h, 1), 0, 1)
        bump = np.sqrt(np.maximum(np.outer(np.sin(np.pi * v), np.sin(np.pi * u)), 0))
        out = np.maximum(out, strength * bump.astype(np.float32))
    return out


def removal(method_rank: int, scale_rank: int) -> float:
    """Share of each opacity a setting removes: grows with the scale, differs per method."""
    return min(0.9, 0.15 + 0.15 * scale_rank + 0.05 * method_rank)


def write_arrays(root: Path, table: pd.DataFrame, grid: dict[str, list[float]], size: int,
                 seed: int, ground_truth: bool, chunk: int = 128) -> list[Path]:  # fmt: skip
    """images.npy (+ phantom arrays), the latents folder and every counterfactual folder."""
    store, latents_dir = root / "store", root / "latents"
    store_arrays = {"images": np.lib.format.open_memmap(
        store / "images.npy", "w+", np.uint8, (len(table), size, size))}  # fmt: skip
    inverted = image_set(store, root / "split", ("calibration", "test")).table
    n, shape = len(inverted), (len(inverted), size, size)
    base, lungs = template(size)
    boxes = table.set_index("row")["boxes"]
    if ground_truth:
        for name in ("healthy", "lesion_masks", "lung_masks"):
            store_arrays[name] = np.lib.format.open_memmap(
                store / f"{name}.npy", "w+", np.uint8, (len(table), size, size)
            )
    latent_arrays = {
        name: np.lib.format.open_memmap(latents_dir / f"{name}.npy", "w+", np.float32, shape)
        for name in (LATENTS, RECONSTRUCTIONS)
    }
    settings = [(m, s, mi, si) for mi, m in enumerate(grid) for si, s in enumerate(grid[m])]
    folders, outputs, scores = [], [], []
    for method, scale, _, _ in settings:
        folder = root / "cf" / method / f"{scale:g}"  # as the counterfactual stage names it
        folder.mkdir(parents=True)
        folders.append(folder)
        outputs.append({
            name: np.lib.format.open_memmap(folder / f"{name}.npy", "w+", np.float32, shape)
            for name in ("counterfactuals", "diff", "absdiff")
        })  # fmt: skip
        scores.append([])
    recon_stats = []
    for start in range(0, n, chunk):
        part = inverted.iloc[start : start + chunk]
        rows, b = part["store_row"].to_numpy(), len(part)
        rng = np.random.default_rng([seed, start])
        contrast = rng.uniform(0.8, 1.1, (b, 1, 1)).astype(np.float32)
        healthy = base * contrast + smooth_field(b, size, 0.05, rng)
        healthy += rng.normal(0, 0.02, (b, size, size)).astype(np.float32)
        lesion = np.stack([opacity(boxes[r], size, rng.uniform(0.08, 0.3)) for r in rows])
        stored = quantize(healthy + lesion, "uint8")
        order = np.argsort(rows)  # ascending rows for the memory map
        store_arrays["images"][rows[order]] = stored[order]
        if ground_truth:
            store_arrays["healthy"][rows[order]] = quantize(healthy, "uint8")[order]
            store_arrays["lesion_masks"][rows[order]] = (lesion > 0.02)[order]
            store_arrays["lung_masks"][rows[order]] = lungs
        original = dequantize(stored)
        recon = original + smooth_field(b, size, 0.02, rng)
        recon += rng.normal(0, 0.01, (b, size, size)).astype(np.float32)
        recon = np.clip(recon, 0, 1)
        err = np.abs(recon - original)
        mse = (err**2).mean(axis=(1, 2))
        recon_stats.append(np.c_[10 * np.log10(1 / mse), err.max(axis=(1, 2)),
                                 err.mean(axis=(1, 2)), np.ones(b)])  # fmt: skip
        latent_arrays[RECONSTRUCTIONS][start : start + b] = recon
        latent_arrays[LATENTS][start : start + b] = rng.standard_normal((b, size, size))
        # what a counterfactual also darkens in half of the images, of either class: normal
        # density taken for an opacity (so detection and localisation are imperfect)
        spurious = np.stack([
            opacity(random_boxes(size, rng)[:1], size, rng.uniform(0.03, 0.2))
            if rng.random() < 0.5 else np.zeros((size, size), np.float32) for _ in range(b)
        ])  # fmt: skip
        for k, (_, _, mi, si) in enumerate(settings):
            change = smooth_field(b, size, 0.01 + 0.01 * si, rng) * (base < 0.45)  # in the lungs
            removed = removal(mi, si) * (lesion + spurious)
            cf = np.clip(recon - removed - change, 0, 1).astype(np.float32)
            diff = original - cf
            out = outputs[k]
            out["counterfactuals"][start : start + b] = cf
            out["diff"][start : start + b] = diff
            out["absdiff"][start : start + b] = np.abs(diff)
            stats = difference_scores(original, cf, recon)  # the stage's default settings
            scores[k].append(pd.DataFrame(stats))
    for array in [*store_arrays.values(), *latent_arrays.values()] + [
        a for out in outputs for a in out.values()
    ]:
        array.flush()
    del store_arrays, latent_arrays, outputs

    inv_cfg = InvertConfig(steps=100, depth=0.5)
    index = inverted.copy()
    index["cond_label"] = len(CLASSES)  # the null class: label-blind inversion
    index[["recon_psnr", "recon_max_abs", "recon_mae", "latent_std"]] = np.concatenate(recon_stats)
    io.write_parquet(latents_dir / INDEX_FILE, index)
    timesteps = tuple(range(5, 501, 5))
    alpha_bars = (1.0, *np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))[list(timesteps)].tolist())
    write_trajectory(latents_dir, Trajectory(timesteps, alpha_bars),
                     trajectory_settings(inv_cfg, CLASSES))  # fmt: skip
    ids = index[["row", "split", "store_row", "image_id", "patient_id", "class_name", "label"]]
    for (method, scale, _, _), folder, parts in zip(settings, folders, scores, strict=True):
        table_ = pd.concat([ids, pd.concat(parts, ignore_index=True)], axis=1)
        table_.insert(1, "method", method)
        table_.insert(2, "scale", float(scale))
        table_.insert(3, "label_informed", False)
        io.write_parquet(folder / "scores.parquet", table_)
    return folders


def build_inputs(root: Path, n: int, size: int, grid: dict[str, list[float]], seed: int,
                 ground_truth: bool) -> pd.DataFrame:  # fmt: skip
    for name in ("store", "split", "latents"):
        (root / name).mkdir(parents=True)
    table = make_layout(n, size, seed, ground_truth)
    write_store_tables(root / "store", root / "split", table, size)
    write_arrays(root, table, grid, size, seed, ground_truth)
    return table


# --- measuring a child process ------------------------------------------------------------------


def cli_command() -> list[str]:
    """The ``cxrgen`` console script beside this interpreter (else ``python -m cxrgen.cli``)."""
    script = Path(sys.executable).with_name("cxrgen")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cxrgen.cli"]


TIME = Path("/usr/bin/time")  # GNU time: the exact peak of the stage (ru_maxrss of its child)


def _stage_pid(pid: int, wrapped: bool) -> int | None:
    """The stage's process: ``pid`` itself, or the one child of the /usr/bin/time wrapper."""
    if not wrapped:
        return pid
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def _poll(pid: int, wrapped: bool, peaks: dict[str, float], done: threading.Event) -> None:
    """Peak VmHWM / RssAnon / RssFile (kB) of the stage from /proc and the load average, every
    0.2 s (RssAnon / RssFile are samples: they show what the peak is made of)."""
    loads, stage = [], None
    while not done.is_set():
        loads.append(os.getloadavg()[0])
        stage = stage or _stage_pid(pid, wrapped)
        try:
            for line in Path(f"/proc/{stage}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("VmHWM", "RssAnon", "RssFile"):
                    peaks[key] = max(peaks.get(key, 0), int(value.split()[0]))
        except (OSError, ValueError):
            pass
        done.wait(0.2)
    peaks["load"] = float(np.mean(loads)) if loads else float("nan")


def measure(command: list[str], log_path: Path) -> dict[str, float]:
    """Run ``command``: wall and CPU seconds, peak resident memory (GB) and the mean 1-minute
    load average while it ran; its output to ``log_path``.

    The peak is GNU time's maximum resident set size of the stage where /usr/bin/time exists
    (a child started straight from this process would report this process's own peak: Linux
    carries the high-water mark across vfork + exec), else the last sampled VmHWM.
    """
    peaks: dict[str, float] = {}
    done = threading.Event()
    wrapped = TIME.exists()
    stats = log_path.with_suffix(".time")
    if wrapped:
        command = [str(TIME), "-f", "%M %U %S", "-o", str(stats), *command]
    with open(log_path, "w") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        poller = threading.Thread(target=_poll, args=(proc.pid, wrapped, peaks, done), daemon=True)
        poller.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        done.set()
        poller.join()
    if os.waitstatus_to_exitcode(status):
        sys.exit(f"{command} failed; see {log_path}")
    if wrapped:
        max_kb, user, system = stats.read_text().split()[-3:]
        max_kb, cpu = int(max_kb), float(user) + float(system)
    else:
        max_kb, cpu = int(peaks.get("VmHWM", 0)), usage.ru_utime + usage.ru_stime
    return dict(wall_s=wall, cpu_s=cpu, max_rss_gb=max_kb * 1024 / GB,
                anon_gb=peaks.get("RssAnon", 0) * 1024 / GB,
                file_gb=peaks.get("RssFile", 0) * 1024 / GB, load=peaks["load"])  # fmt: skip


def parse_grid(items: list[str]) -> dict[str, list[float]]:
    grid = {}
    for item in items:
        method, _, scales = item.partition("=")
        grid[method] = [float(s) for s in scales.split(",")]
    return grid


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def sanity(metrics: Path) -> list[str]:
    """A few headline numbers, to show the statistics are not degenerate."""
    lines = []
    det = pd.read_parquet(metrics / "detection.parquet")
    det = det[(det["metric"] == "auroc") & (det["source"] == "measured")]
    for split, part in det.groupby("split"):
        low, high = part["value"].min(), part["value"].max()
        lines.append(f"detection AUROC ({split}): {low:.3f}-{high:.3f}, {len(part)} rows")
    loc = pd.read_parquet(metrics / "localisation.parquet")
    pooled = loc[(loc["metric"] == "pixel_auroc_pooled") & (loc["split"] == "test")]
    if not pooled.empty:
        width = (pooled["ci_high"] - pooled["ci_low"]).median()
        lines.append(f"pooled pixel AUROC (test): {pooled['value'].min():.3f}-"
                     f"{pooled['value'].max():.3f}, median 95% CI width {width:.4f} "
                     f"({len(pooled)} map x smoothing x setting rows)")  # fmt: skip
    gt = pd.read_parquet(metrics / "ground_truth.parquet")
    if not gt.empty:
        lines.append(f"ground_truth rows: {len(gt)}")
    sev = pd.read_parquet(metrics / "severity.parquet")
    if not sev.empty:
        lines.append(f"severity rows: {len(sev)}")
    return lines


def describe(root: Path) -> str:
    """What the inputs in ``root`` hold, in one line."""
    split = pd.read_parquet(root / "split" / SPLIT_FILE)
    held = split[split["split"].isin(["calibration", "test"])]
    images = np.load(root / "store" / "images.npy", mmap_mode="r")
    settings = sorted(
        str(p.parent.relative_to(root / "cf")) for p in (root / "cf").glob("**/scores.parquet")
    )
    return (
        f"{len(split)} store rows, {len(held)} held-out images of {images.shape[1]}x"
        f"{images.shape[2]} ({(held['class_name'] == OPACITY).sum()} {OPACITY}, "
        f"{held['patient_id'].nunique()} patients; calibration "
        f"{(held['split'] == 'calibration').sum()}, test {(held['split'] == 'test').sum()}), "
        f"{len(settings)} settings ({', '.join(settings)})"
        f"{', ground truth arrays' if (root / 'store' / 'healthy.npy').exists() else ''}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2973, help="held-out (inverted) images")
    parser.add_argument("--size", type=int, default=256, help="stored image side")
    parser.add_argument("--grid", nargs="+", default=DEFAULT_GRID, metavar="METHOD=S1,S2,...",
                        help="methods and their scales (default: %(default)s)")  # fmt: skip
    parser.add_argument(
        "--ground-truth", action="store_true",
        help="phantom case: healthy twins, lesion and lung masks, RALO scores",
    )  # fmt: skip
    parser.add_argument("--n-boot", type=int, help="evaluate's n_boot (default: its own, 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument(
        "--inputs", type=Path,
        help="measure again on a folder a --keep run left (its stage outputs are replaced)",
    )  # fmt: skip
    args = parser.parse_args()

    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    root = args.inputs or Path(tempfile.mkdtemp(prefix="bench_evaluate_", dir=args.workdir))
    keep = args.keep or args.inputs is not None
    try:
        if args.inputs is None:
            start = time.perf_counter()
            build_inputs(root, args.images, args.size, parse_grid(args.grid), args.seed,
                         args.ground_truth)  # fmt: skip
            print(f"inputs built in {time.perf_counter() - start:.0f} s (not timed below)")
        what = describe(root)
        print(what, flush=True)
        for name in ("metrics", "figures"):
            shutil.rmtree(root / name, ignore_errors=True)
        common = ["--latents", str(root / "latents"), "--counterfactuals", str(root / "cf"),
                  "--store", str(root / "store")]  # fmt: skip
        evaluate = [*cli_command(), "evaluate", *common, "--output", str(root / "metrics")]
        if args.n_boot:
            evaluate += ["--n-boot", str(args.n_boot)]
        figures = [*cli_command(), "figures", *common, "--metrics", str(root / "metrics"),
                   "--output", str(root / "figures")]  # fmt: skip
        results = {}
        for name, command in (("evaluate", evaluate), ("figures", figures)):
            results[name] = measure(command, root / f"{name}.log")
            print(f"{name}: {results[name]['wall_s']:.1f} s", flush=True)
        print("\n".join(sanity(root / "metrics")))
    finally:
        if keep:
            print(f"inputs and outputs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    print(f"\nCPU: {cpu_name()}, {os.cpu_count()} cores; {what}\n")
    print(
        "| stage | wall (s) | CPU (s) | peak RSS (GB) | peak anon (GB) | peak file-backed (GB) "
        "| mean load | under 10 min and 8 GB |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, r in results.items():
        ok = r["wall_s"] < 600 and r["max_rss_gb"] < 8
        print(f"| {name} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['max_rss_gb']:.2f} | "
              f"{r['anon_gb']:.2f} | {r['file_gb']:.2f} | {r['load']:.1f} | "
              f"{'yes' if ok else 'NO'} |")  # fmt: skip


if __name__ == "__main__":
    main()
