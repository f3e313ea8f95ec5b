"""Diffusion training: determinism, exact resume, learning, outputs, config errors."""

import shutil

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from safetensors.torch import load_file
from synthetic_store import CLASSES, make_store

from cxrgen import io
from cxrgen.config import from_mapping
from cxrgen.data.classes import read_classes
from cxrgen.diffusion.config import DiffusionTrainConfig
from cxrgen.diffusion.model import load_diffusion
from cxrgen.diffusion.train import diffusion_loss, train_diffusion
from cxrgen.errors import ConfigError
from cxrgen.training.loop import StepContext

SIZE = 16
TINY = dict(
    block_out_channels=(16, 32),
    norm_num_groups=8,
    attention_head_dim=8,
    attention_resolutions=(8,),
    batch_size=4,
    lr=2e-3,
    warmup_steps=2,
    max_steps=24,
    checkpoint_every=8,
    keep_checkpoints=3,
    log_every=4,
    n_sample_per_class=3,
    sample_steps=3,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("data"), n=24, size=SIZE, n_valid=8)


@pytest.fixture(scope="module")
def trained(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("diffusion")
    history = train_diffusion(*store, out, DiffusionTrainConfig(**TINY), progress=False)
    return out, history


def unet_tensors(out):
    return load_file(out / "unet" / "diffusion_pytorch_model.safetensors")


def assert_same_weights(a, b):
    ta, tb = unet_tensors(a), unet_tensors(b)
    assert ta.keys() == tb.keys()
    for key in ta:
        assert torch.equal(ta[key], tb[key]), key


def test_outputs_load_and_describe_the_data(trained):
    out, history = trained
    unet = UNet2DModel.from_pretrained(out / "unet")
    assert unet.config.num_class_embeds == len(CLASSES) + 1
    assert unet.config.sample_size == SIZE and unet.config.in_channels == 1
    assert list(unet.config.down_block_types) == ["DownBlock2D", "AttnDownBlock2D"]
    scheduler = DDPMScheduler.from_pretrained(out / "scheduler")
    assert scheduler.config.prediction_type == "epsilon"
    assert scheduler.config.num_train_timesteps == 1000
    DDIMScheduler.from_config(scheduler.config)
    assert read_classes(out / "classes.json") == CLASSES
    unet2, scheduler2, classes = load_diffusion(out)
    assert classes == CLASSES and not unet2.training
    assert scheduler2.config == scheduler.config
    grid = matplotlib.image.imread(out / "samples.png")
    assert grid.shape[:2] == (len(CLASSES) * SIZE, 3 * SIZE)
    picture = matplotlib.image.imread(out / "loss.png")
    assert min(picture.shape[:2]) > 100 and picture.std() > 0.01
    table = pd.read_parquet(out / "loss.parquet")
    assert list(table.columns) == ["step", "loss", "lr", "images_per_s"]
    assert table["step"].tolist() == list(range(4, 25, 4))
    pd.testing.assert_frame_equal(table, history)
    prov = io.read_json(out / "provenance.json")
    assert prov["stage"] == "train_diffusion" and prov["config"]["label_dropout"] == 0.15
    assert prov["null_class"] == 2 and prov["image_size"] == [SIZE, SIZE]
    assert [p.name for p in sorted((out / "checkpoints").iterdir())] == [
        "step-00000008.pt",
        "step-00000016.pt",
        "step-00000024.pt",
    ]


def test_loss_decreases(trained):
    loss = trained[1]["loss"].to_numpy()
    assert loss[0] > 0.5  # epsilon MSE starts near the noise variance
    assert loss[-2:].mean() < 0.6 * loss[0], loss


def test_same_seed_same_weights_and_other_seed_differs(store, trained, tmp_path):
    again = tmp_path / "again"
    train_diffusion(*store, again, DiffusionTrainConfig(**TINY), progress=False)
    assert_same_weights(trained[0], again)
    other = tmp_path / "other"
    train_diffusion(
        *store,
        other,
        DiffusionTrainConfig(
            **{**TINY, "seed": 1, "max_steps": 2, "warmup_steps": 1, "sample_every": 1}
        ),
        progress=True,
    )
    a, b = unet_tensors(trained[0]), unet_tensors(other)
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert sorted(p.name for p in (other / "samples").iterdir()) == [
        "step-00000001.png",
        "step-00000002.png",
    ]


def test_killed_run_resumes_to_exactly_the_same_weights(store, trained, tmp_path, caplog):
    """A run that died after its step-8 checkpoint is re-run: it resumes and matches."""
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copy(trained[0] / "checkpoints" / "step-00000008.pt", resumed / "checkpoints")
    with caplog.at_level("INFO"):
        history = train_diffusion(*store, resumed, DiffusionTrainConfig(**TINY), progress=False)
    assert "resuming from step 8" in caplog.text
    assert "changed config keys" not in caplog.text
    assert_same_weights(trained[0], resumed)
    pd.testing.assert_frame_equal(
        history.drop(columns="images_per_s"), trained[1].drop(columns="images_per_s")
    )
    assert io.read_json(resumed / "provenance.json")["resumed_from_step"] == 8


def test_rerun_of_a_finished_run_only_rewrites_outputs(store, trained, tmp_path, caplog):
    again = tmp_path / "again"
    shutil.copytree(trained[0] / "checkpoints", tmp_path / "ck")
    with caplog.at_level("INFO"):
        train_diffusion(
            *store,
            again,
            DiffusionTrainConfig(**TINY),
            progress=False,
            checkpoint_dir=tmp_path / "ck",
        )
    assert "nothing left to train" in caplog.text
    assert_same_weights(trained[0], again)
    assert not (again / "checkpoints").exists()


def test_label_dropout_feeds_the_null_class():
    seen = {}

    class Probe(torch.nn.Module):
        def forward(self, x, t, class_labels):
            seen["labels"] = class_labels
            return type("Out", (), {"sample": x * 0})()

    x0 = torch.zeros(8, 1, 4, 4)
    labels = torch.tensor([0, 1] * 4)
    scheduler = DDPMScheduler()
    for p, expected in ((1.0, {2}), (0.0, {0, 1})):
        ctx = StepContext(0, torch.Generator().manual_seed(0), 8, slice(0, 8), torch.device("cpu"))
        loss, _ = diffusion_loss(
            Probe(),
            x0,
            labels,
            ctx,
            scheduler=scheduler,
            num_classes=2,
            label_dropout=p if p < 1 else 0.999999,
        )
        assert set(seen["labels"].tolist()) == expected
        assert loss > 0


def test_focus_draws_timesteps_below_the_inversion_depth():
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x, t, class_labels):
            seen.append(t.clone())
            return type("Out", (), {"sample": x * 0})()

    x0, labels, n = torch.zeros(512, 1, 2, 2), torch.zeros(512, dtype=torch.long), 1000
    scheduler = DDPMScheduler(num_train_timesteps=n)

    def draw(**focus):
        ctx = StepContext(
            0, torch.Generator().manual_seed(0), 512, slice(0, 512), torch.device("cpu")
        )
        diffusion_loss(Probe(), x0, labels, ctx, scheduler=scheduler, num_classes=1,
                       label_dropout=0.1, **focus)  # fmt: skip
        return seen[-1]

    uniform = draw()
    assert torch.equal(draw(focus_timesteps=0.3, focus_probability=0.0), uniform)  # no extra draw
    assert draw(focus_timesteps=0.3, focus_probability=1.0).max() < 300
    mixed = draw(focus_timesteps=0.3, focus_probability=0.75)
    low = (mixed < 300).float().mean().item()
    assert 0.75 + 0.25 * 0.3 - 0.06 < low < 0.75 + 0.25 * 0.3 + 0.06  # 0.825 expected
    assert mixed.max() >= 300  # the rest still covers the whole schedule
    assert (uniform < 300).float().mean().item() < 0.4
    with pytest.raises(ConfigError, match="focus_timesteps"):
        DiffusionTrainConfig(focus_timesteps=0)


def write_store(root, images, labels, splits):
    store, split = root / "store", root / "split"
    store.mkdir(parents=True)
    split.mkdir(parents=True)
    np.save(store / "images.npy", images)
    n = len(images)
    pd.DataFrame(
        {
            "row": np.arange(n),
            "image_id": [str(i) for i in range(n)],
            "patient_id": [str(i) for i in range(n)],
            "class_name": [CLASSES[v] for v in labels],
            "label": labels,
            "split": splits,
        }
    ).to_parquet(split / "split.parquet")
    io.write_json(split / "classes.json", {"names": CLASSES})
    return store, split


@pytest.mark.parametrize(
    ("size", "labels", "splits", "overrides", "message"),
    [
        (
            18,
            [0, 1] * 4,
            ["train"] * 8,
            {"block_out_channels": (16, 32, 32), "attention_resolutions": ()},
            r"image size 18x18 is not divisible by 2\*\*\(len\(block_out_channels\)-1\) = 4",
        ),
        (16, [0, 1] * 4, ["train"] * 8, {"batch_size": 16}, "larger than the 8 training images"),
        (16, [0, 1] * 4, ["train", "valid"] * 4, {}, r"\['Lung Opacity'\] have no training"),
        (
            16,
            [0, 1] * 4,
            ["train"] * 8,
            {"attention_resolutions": (4,)},
            r"attention_resolutions \[4\] are not resolutions .* \[16, 8\]",
        ),
    ],
)
def test_impossible_configs_are_config_errors(tmp_path, size, labels, splits, overrides, message):
    images = np.zeros((len(labels), size, size), np.uint8)
    store = write_store(tmp_path, images, np.array(labels), splits)
    cfg = DiffusionTrainConfig(**{**TINY, "max_steps": 1, "warmup_steps": 0, **overrides})
    with pytest.raises(ConfigError, match=message):
        train_diffusion(*store, tmp_path / "out", cfg, progress=False)
    assert not (tmp_path / "out" / "unet").exists()


def test_config_checks_and_yaml_mapping():
    cfg = from_mapping(DiffusionTrainConfig, {"block_out_channels": [32, 64], "lr": 1})
    assert cfg.block_out_channels == (32, 64) and cfg.lr == 1.0
    with pytest.raises(ConfigError, match="norm_num_groups"):
        DiffusionTrainConfig(block_out_channels=(12, 24))
    with pytest.raises(ConfigError, match="label_dropout"):
        DiffusionTrainConfig(label_dropout=1.0)
    with pytest.raises(ConfigError, match="mixed_precision"):
        DiffusionTrainConfig(mixed_precision="fp8")
    with pytest.raises(ConfigError, match="aug_shift"):
        DiffusionTrainConfig(aug_shift=0.9)
    with pytest.raises(ConfigError, match="unknown key"):
        from_mapping(DiffusionTrainConfig, {"hflip": True})
