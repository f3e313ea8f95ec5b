"""Lung segmenter: right / left split of binary masks, masks moved with the images, a UNet
that learns tiny lungs through the one training loop, determinism, resume, Dice, errors."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from cxrgen.data.classes import write_classes
from cxrgen.data.store import load_split
from cxrgen.errors import DataError
from cxrgen.lungseg.config import LungSegTrainConfig
from cxrgen.lungseg.predict import dice_table, predict_lung_masks, write_predicted_masks
from cxrgen.lungseg.sides import LEFT, RIGHT, split_sides
from cxrgen.lungseg.train import train_lungseg
from cxrgen.training.augment import Augmentation
from cxrgen.training.data import XrayDataset

SIZE = 32
CFG = LungSegTrainConfig(
    max_steps=120, batch_size=8, warmup_steps=10, lr=3e-3, checkpoint_every=60,
    block_out_channels=(8, 16, 32), norm_num_groups=4, device="cpu", valid_split="calibration",
)  # fmt: skip


def chest(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A tiny chest: two dark lungs (labels 1 image left, 2 image right) in a bright body."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    image = 0.7 + 0.05 * rng.standard_normal((SIZE, SIZE))
    labels = np.zeros((SIZE, SIZE), np.uint8)
    cx, cy = rng.uniform(0.45, 0.55), rng.uniform(0.45, 0.55)
    for label, side in ((RIGHT, -1), (LEFT, 1)):
        ax, ay = rng.uniform(0.12, 0.17), rng.uniform(0.22, 0.3)
        inside = ((xx - cx - side * 0.22) / ax) ** 2 + ((yy - cy) / ay) ** 2 < 1
        labels[inside] = label
        image[inside] -= rng.uniform(0.35, 0.5)
    return np.clip(image, 0, 1).astype(np.float32), labels


def make_store(root: Path, n: int, seed: int, sided: bool, masks: bool = True):
    """store/ (images, index, lung_masks: 0/1 or sided) + split/ (train, calibration, test)."""
    rng = np.random.default_rng(seed)
    images, labels = zip(*(chest(rng) for _ in range(n)), strict=True)
    store, split = root / "store", root / "split"
    store.mkdir(parents=True)
    split.mkdir(parents=True)
    np.save(store / "images.npy", np.rint(np.stack(images) * 65535).astype(np.uint16))
    if masks:
        stacked = np.stack(labels)
        np.save(store / "lung_masks.npy", stacked if sided else (stacked > 0).astype(np.uint8))
    rows = np.arange(n)
    ids = [f"img{i:03d}" for i in rows]
    pd.DataFrame({"row": rows, "image_id": ids, "patient_id": [f"p{i // 2}" for i in rows]}
                 ).to_parquet(store / "index.parquet")  # fmt: skip
    names = np.where(rows < n - 8, "train", np.where(rows < n - 4, "calibration", "test"))
    pd.DataFrame({"row": rows, "image_id": ids, "patient_id": [f"p{i // 2}" for i in rows],
                  "class_name": "Normal", "label": 0, "split": names}
                 ).to_parquet(split / "split.parquet")  # fmt: skip
    write_classes(split / "classes.json", ["Normal"])
    return store, split, np.stack(labels)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("lungseg")
    store, split, _ = make_store(root / "train", 40, seed=0, sided=False)
    out = root / "model"
    table = train_lungseg(store, split, out, CFG, progress=False)
    return store, split, out, table


def test_split_sides_of_constructed_masks():
    mask = np.zeros((10, 12), np.uint8)
    mask[2:8, 1:4] = 1  # image left: the patient's right lung
    mask[2:9, 7:11] = 1  # image right: the left lung
    mask[0, 0] = 1  # a speck beside the right lung
    mask[9, 11] = 1  # one beside the left lung
    expected = np.zeros_like(mask)
    expected[2:8, 1:4] = RIGHT
    expected[0, 0] = RIGHT
    expected[2:9, 7:11] = LEFT
    expected[9, 11] = LEFT
    np.testing.assert_array_equal(split_sides(mask), expected)
    # one component (lungs touching below the heart): cut at the narrowest middle column
    joined = mask.copy()
    joined[0, 0] = joined[9, 11] = 0
    joined[7, 4:7] = 1
    sided = split_sides(joined)
    expected_joined = np.where(joined > 0, LEFT, 0)
    expected_joined[:, :5][joined[:, :5] > 0] = RIGHT  # bridge columns 4-6: cut before column 5
    np.testing.assert_array_equal(sided, expected_joined)
    # already sided masks are kept; empty ones stay empty
    np.testing.assert_array_equal(split_sides(expected), expected)
    assert not split_sides(np.zeros((4, 4))).any()
    with pytest.raises(DataError, match="labels must be 0, 1, 2"):
        split_sides(np.array([[0, 2], [3, 0]]))


def test_geometric_augmentation_moves_the_target_with_the_image(tmp_path):
    store, split, _ = make_store(tmp_path, 12, seed=3, sided=True)
    data = load_split(store, split, "train")
    targets = tmp_path / "targets.npy"
    np.save(targets, np.load(store / "lung_masks.npy")[data.rows])
    data = dataclasses.replace(data, targets_path=targets)
    aug = Augmentation(rotate_deg=10, shift=0.1, scale=0.1, brightness=0, contrast=0)
    dataset = XrayDataset(data, seed=0, augmentation=aug)
    plain_image, plain_target = dataset[0]
    assert plain_target.shape == (SIZE, SIZE) and plain_target.dtype == torch.int64
    image, target = dataset[(0, 5, 1)]
    assert not torch.equal(target, plain_target)  # moved ...
    dark = (image[0] + 1) / 2 < 0.5
    assert ((target > 0) == dark).float().mean() > 0.95  # ... with the image


def test_learns_tiny_lungs_and_predicts_another_store(trained, tmp_path):
    store, split, out, table = trained
    assert {"model.safetensors", "config.json", "labels.json", "loss.parquet",
            "validation.parquet", "provenance.json"} <= {p.name for p in out.iterdir()}  # fmt: skip
    assert not list(out.glob(".targets-*"))  # the training targets are removed
    assert len(table) == 4 and table["dice_mean"].min() > 0.8
    # another data set, sided true masks, read only to score
    other, _, truth = make_store(tmp_path / "other", 16, seed=7, sided=True)
    predicted = predict_lung_masks(out, other, device="cpu")
    assert predicted.shape == truth.shape and predicted.dtype == np.uint8
    dice = dice_table(predicted, truth)
    assert dice["dice_right"].mean() > 0.8 and dice["dice_left"].mean() > 0.8
    summary = write_predicted_masks(out, other, tmp_path / "pred", device="cpu", n_boot=50)
    np.testing.assert_array_equal(np.load(tmp_path / "pred" / "lung_masks.npy"), predicted)
    row = summary.set_index("metric").loc["dice_mean"]
    assert row.ci_low <= row.value <= row.ci_high and row.n_images == 16 and row.n_patients == 8
    assert not (other / "lung_masks_pred.npy").exists()  # the store is never written


def test_dice_table_exact():
    truth = np.zeros((2, 4, 4), np.uint8)
    truth[:, :, :2] = RIGHT
    truth[:, :, 2:] = LEFT
    pred = truth.copy()
    pred[1, :, 2:] = 0  # image 1: left lung missed
    table = dice_table(pred, truth)
    np.testing.assert_allclose(table["dice_right"], [1, 1])
    np.testing.assert_allclose(table["dice_left"], [1, 0])
    np.testing.assert_allclose(table["dice_lungs"], [1, 2 * 8 / (8 + 16)])


def test_same_seed_same_weights_and_killed_run_resumes_exactly(trained, tmp_path):
    store, split, _, _ = trained
    cfg = dataclasses.replace(CFG, max_steps=6, warmup_steps=2, checkpoint_every=3, valid_split="")
    a, b = tmp_path / "a", tmp_path / "b"
    train_lungseg(store, split, a, cfg, progress=False)
    (b / "checkpoints").mkdir(parents=True)  # killed after step 3: resumes from it
    shutil.copy(a / "checkpoints" / "step-00000003.pt", b / "checkpoints")
    train_lungseg(store, split, b, cfg, progress=False)
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    c = tmp_path / "c"
    train_lungseg(store, split, c, cfg, progress=False)
    wc = load_file(c / "model.safetensors")
    assert all(torch.equal(wa[k], wc[k]) for k in wa)


def test_a_store_without_lung_masks_is_named(tmp_path):
    store, split, _ = make_store(tmp_path, 12, seed=1, sided=False, masks=False)
    with pytest.raises(DataError, match="no lung masks"):
        train_lungseg(store, split, tmp_path / "m", CFG, progress=False)
    with pytest.raises(DataError, match="no lung segmenter"):
        predict_lung_masks(tmp_path / "nothing", store)


def test_evaluation_reads_predicted_masks_in_set_order(tmp_path):
    from cxrgen.data.store import image_set
    from cxrgen.evaluation.evaluate import predicted_lung_masks
    from cxrgen.evaluation.severity import lung_features

    store, split, truth = make_store(tmp_path / "s", 12, seed=2, sided=True, masks=False)
    images = image_set(store, split, ("test", "calibration"))
    np.save(tmp_path / "pred.npy", truth)
    view = predicted_lung_masks(tmp_path / "pred.npy", images)
    np.testing.assert_array_equal(view[:], truth[images.table["store_row"].to_numpy()])
    maps = np.abs(np.random.default_rng(0).standard_normal(view.shape)).astype(np.float32)
    features = lung_features(maps, maps, view)
    assert (features["region"] == "lung mask").all()
    np.save(tmp_path / "short.npy", truth[:5])
    with pytest.raises(DataError, match="predict-lungseg"):
        predicted_lung_masks(tmp_path / "short.npy", images)


def test_command_line_and_presets_build_the_config():
    import yaml

    from cxrgen.cli import build_parser
    from cxrgen.cli_flags import config_from_args

    root = Path(__file__).resolve().parents[1]
    args = build_parser().parse_args(
        ["train-lungseg", "--store", "s", "--split", "p", "--output", "o", "--max-steps", "7",
         "--warmup-steps", "2", "--block-out-channels", "8", "16", "--checkpoints", "c"]
    )  # fmt: skip
    cfg = config_from_args(args)
    assert cfg.max_steps == 7 and cfg.block_out_channels == (8, 16) and args.checkpoints
    args = build_parser().parse_args(["predict-lungseg", "--model", "m", "--store", "s",
                                      "--output", "o"])  # fmt: skip
    assert args.device == "auto" and args.func.__module__ == "cxrgen.lungseg.command"
    for name in ("config.yaml", "presets/smoke.yaml", "presets/covid_qu_ex.yaml"):
        sections = yaml.safe_load((root / name).read_text())["datasets"]
        for ds in sections.values():
            if "lungseg" in ds:
                LungSegTrainConfig(**{k: tuple(v) if isinstance(v, list) else v
                                      for k, v in ds["lungseg"].items()})  # fmt: skip
