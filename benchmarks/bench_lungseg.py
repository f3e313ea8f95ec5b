"""Dice of the lung segmenter on a data set it did not train on, beside the image halves.

Builds the default run's phantom stores (config.yaml's phantoms / preprocess / split sections
of ``covidqu`` and ``rsna``), trains the lung segmenter on covidqu's train split with
config.yaml's ``covidqu.lungseg`` section (the ``train_lungseg`` job of the default run), then
labels every rsna phantom and scores the masks against the phantoms' true lung labels, which
only score (the ``predict_lung_masks`` job). The baseline is what the per-lung severity
features read without masks: the image halves (right lung = image left half).

Example (CPU):
    uv run --frozen python benchmarks/bench_lungseg.py --threads 2
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from cxrgen import phantoms
from cxrgen.config import from_mapping
from cxrgen.data.preprocess import PreprocessConfig, preprocess
from cxrgen.data.split import SplitConfig, run_split
from cxrgen.data.store import LUNG_MASKS, array_path, read_index
from cxrgen.lungseg.config import LungSegTrainConfig
from cxrgen.lungseg.predict import dice_summary, dice_table, write_predicted_masks
from cxrgen.lungseg.sides import LEFT, RIGHT
from cxrgen.lungseg.train import train_lungseg

ROOT = Path(__file__).resolve().parents[1]
MAKERS = {name: phantoms.LAYOUTS[name] for name in ("rsna", "covidqu")}


def make_stores(work: Path, config: dict) -> None:
    for name, (cls, make) in MAKERS.items():
        if (work / "splits" / name / "split.parquet").exists():
            continue
        ds = config["datasets"][name]
        make(work / "phantoms" / name, from_mapping(cls, ds.get("phantoms")), progress=False)
        prep = from_mapping(PreprocessConfig, ds.get("preprocess"))
        preprocess(work / "phantoms" / name, work / "data" / name, prep, threads=2)
        run_split(work / "data" / name, work / "splits" / name,
                  from_mapping(SplitConfig, ds.get("split")))  # fmt: skip


def halves_summary(store: Path, n_boot: int) -> pd.DataFrame:
    """The Dice of the image halves (the features' stand-in without masks)."""
    truth = np.load(array_path(store, LUNG_MASKS))
    width = truth.shape[2]
    halves = np.where(np.arange(width) < width / 2, RIGHT, LEFT).astype(np.uint8)
    table = dice_table(np.broadcast_to(halves, truth.shape), truth)
    return dice_summary(table, read_index(store)["patient_id"].astype(str).to_numpy(), n_boot)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="keep the stores here (reused if there)")
    parser.add_argument("--steps", type=int, help="instead of config.yaml's max_steps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    section = dict(config["datasets"]["covidqu"]["lungseg"], device=args.device)
    if args.steps:
        section["max_steps"] = args.steps
    cfg = from_mapping(LungSegTrainConfig, section, "datasets.covidqu.lungseg")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        make_stores(work, config)
        start, cpu = time.perf_counter(), time.process_time()
        valid = train_lungseg(work / "data" / "covidqu", work / "splits" / "covidqu",
                              work / "lungseg", cfg, progress=False)  # fmt: skip
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        store = work / "data" / "rsna"
        summary = write_predicted_masks(work / "lungseg", store, work / "lung_masks" / "rsna",
                                        args.device, n_boot=args.n_boot)  # fmt: skip
        halves = halves_summary(store, args.n_boot)
        shape = np.load(array_path(store, LUNG_MASKS), mmap_mode="r").shape
        split = pd.read_parquet(work / "splits" / "covidqu" / "split.parquet")
        n_train = int((split["split"] == "train").sum())
    print(f"trained on the {n_train} images of the covidqu phantoms' train split: "
          f"{cfg.max_steps} steps, batch {cfg.batch_size}, "
          f"widths {cfg.block_out_channels}, {seconds:.0f} s ({cpu:.0f} CPU s) on "
          f"{args.threads} thread(s); "
          f"Dice on its own {cfg.valid_split} split: "
          f"{valid['dice_mean'].mean():.3f}")  # fmt: skip
    print(f"rsna phantoms: {shape[0]} images of {shape[1]}x{shape[2]}\n")
    print("| Dice on rsna phantoms | lung segmenter (95% CI) | image halves (95% CI) |")
    print("| --- | ---: | ---: |")
    for (_, ours), (_, base) in zip(summary.iterrows(), halves.iterrows(), strict=True):
        print(f"| {ours.metric} | {ours.value:.3f} ({ours.ci_low:.3f}-{ours.ci_high:.3f}) | "
              f"{base.value:.3f} ({base.ci_low:.3f}-{base.ci_high:.3f}) |")  # fmt: skip


if __name__ == "__main__":
    main()
