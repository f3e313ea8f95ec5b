"""Noise-aware classifier: learns the blob at low t, guidance gradients, determinism, resume."""

import shutil

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from synthetic_store import CLASSES, make_store

from cxrgen import io
from cxrgen.classifier.config import ClassifierTrainConfig
from cxrgen.classifier.model import NoiseAwareClassifier, load_classifier, log_prob_gradient
from cxrgen.classifier.train import train_classifier
from cxrgen.classifier.validate import auroc
from cxrgen.config import from_mapping
from cxrgen.data.store import load_split
from cxrgen.diffusion.model import build_scheduler, check_same_schedule
from cxrgen.errors import ConfigError, DataError
from cxrgen.training.data import XrayDataset

SIZE = 16
TINY = dict(
    block_out_channels=(16, 32),
    norm_num_groups=8,
    attention_head_dim=8,
    batch_size=8,
    lr=2e-3,
    weight_decay=0.0,
    warmup_steps=3,
    max_steps=40,
    checkpoint_every=10,
    keep_checkpoints=4,
    log_every=5,
    valid_bins=4,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("data"), n=48, size=SIZE, n_valid=16)


@pytest.fixture(scope="module")
def diffusion_scheduler(tmp_path_factory):
    path = tmp_path_factory.mktemp("scheduler")
    build_scheduler(1000, "cosine").save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def trained(store, diffusion_scheduler, tmp_path_factory):
    out = tmp_path_factory.mktemp("classifier")
    table = train_classifier(
        *store,
        out,
        ClassifierTrainConfig(**TINY),
        progress=False,
        scheduler_dir=diffusion_scheduler,
    )
    return out, table


def test_validation_table_per_timestep_bin(trained):
    out, table = trained
    saved = pd.read_parquet(out / "validation.parquet")
    pd.testing.assert_frame_equal(saved, table)
    assert len(table) == 4 and table["t_bin"].tolist() == [0, 1, 2, 3]
    assert (
        table["t_lo"].tolist() == [0, 250, 500, 750]
        and (table["t_hi"] == table["t_lo"] + 250).all()
    )
    assert (table["n"] == 8).all()  # the calibration half of the 16 held-out images
    # the blob is visible at low noise: far better than chance (0.5)
    low = table.iloc[0]
    assert low["accuracy"] >= 0.75 and low["auroc"] >= 0.85, table
    picture = matplotlib.image.imread(out / "validation.png")
    assert min(picture.shape[:2]) > 100 and picture.std() > 0.01
    assert {"step", "loss", "lr", "images_per_s", "accuracy"} <= set(
        pd.read_parquet(out / "loss.parquet").columns
    )
    assert io.read_json(out / "classes.json")["names"] == CLASSES


def test_uses_the_diffusion_noise_schedule(trained, diffusion_scheduler):
    from diffusers import DDPMScheduler

    own = DDPMScheduler.from_pretrained(trained[0] / "scheduler")
    assert own.config.beta_schedule == "squaredcos_cap_v2"
    check_same_schedule(DDPMScheduler.from_pretrained(diffusion_scheduler), own)
    with pytest.raises(ConfigError, match="another noise schedule"):
        check_same_schedule(build_scheduler(1000, "linear"), own)


def test_loaded_classifier_gives_guidance_gradients_and_classifies_clean_images(store, trained):
    model = load_classifier(trained[0])
    assert isinstance(model, NoiseAwareClassifier) and not model.training
    held_out = [XrayDataset(load_split(*store, name)) for name in ("calibration", "test")]
    x0 = torch.stack([data[i][0] for data in held_out for i in range(len(data))])
    labels = torch.stack([data[i][1] for data in held_out for i in range(len(data))])
    # clean-image classifier at t = 0
    with torch.no_grad():
        logits = model(x0, 0)
    assert logits.shape == (16, 2)
    assert (logits.argmax(1) == labels).float().mean() >= 0.75
    # guidance: grad_x log p(y | x_t, t), finite and nonzero, under torch.no_grad callers too
    scheduler = build_scheduler(1000, "cosine")
    t = torch.full((16,), 300)
    x_t = scheduler.add_noise(
        x0, torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)), t
    )
    with torch.no_grad():
        grad = log_prob_gradient(model, x_t, t, torch.zeros(16, dtype=torch.long))
    assert grad.shape == x_t.shape and torch.isfinite(grad).all()
    assert (grad.flatten(1).abs().sum(1) > 0).all()
    with torch.enable_grad():
        x = x_t.clone().requires_grad_(True)
        model(x, t).log_softmax(-1)[:, 0].sum().backward()
    assert torch.allclose(x.grad, grad, atol=1e-6)


def test_killed_run_resumes_to_exactly_the_same_weights(
    store, trained, diffusion_scheduler, tmp_path, caplog
):
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copy(trained[0] / "checkpoints" / "step-00000030.pt", resumed / "checkpoints")
    with caplog.at_level("INFO"):
        table = train_classifier(
            *store,
            resumed,
            ClassifierTrainConfig(**TINY),
            progress=False,
            scheduler_dir=diffusion_scheduler,
        )
    assert "resuming from step 30" in caplog.text
    a, b = load_file(trained[0] / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    pd.testing.assert_frame_equal(table, trained[1])


def test_errors(store, diffusion_scheduler, tmp_path):
    schedule = dict(progress=False, scheduler_dir=diffusion_scheduler)
    with pytest.raises(DataError, match="split 'valid' has no labelled images"):
        train_classifier(
            *store, tmp_path, ClassifierTrainConfig(**TINY, valid_split="valid"), **schedule
        )
    with pytest.raises(ConfigError, match="larger than the 32 training images"):
        train_classifier(
            *store, tmp_path, ClassifierTrainConfig(**{**TINY, "batch_size": 64}), **schedule
        )
    with pytest.raises(ConfigError, match="attention_resolutions"):
        train_classifier(
            *store, tmp_path, ClassifierTrainConfig(**TINY, attention_resolutions=(32,)), **schedule
        )
    with pytest.raises(DataError, match="no scheduler_config.json"):
        train_classifier(
            *store,
            tmp_path,
            ClassifierTrainConfig(**TINY),
            progress=False,
            scheduler_dir=tmp_path / "nowhere",
        )
    assert not (tmp_path / "model.safetensors").exists()


def test_auroc_binary_multiclass_and_missing_class():
    y = np.array([0, 0, 1, 1])
    assert auroc(y, np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.1, 0.9]])) == 1.0
    p3 = np.eye(3)[[0, 1, 2, 0]] * 0.8 + 0.2 / 3
    assert auroc(np.array([0, 1, 2, 0]), p3) == 1.0
    assert np.isnan(auroc(np.array([0, 0]), np.array([[0.5, 0.5], [0.4, 0.6]])))


def test_training_and_validation_timesteps_stop_at_the_inversion_depth(store, trained):
    """max_depth = 0.3 of T = 1000: training draws t from [0, 300], the validation table
    bins [0, 301) (guidance never asks the classifier about t > L)."""
    from cxrgen.classifier.train import classifier_loss, timestep_limit
    from cxrgen.classifier.validate import validate_per_timestep

    scheduler = build_scheduler(1000, "linear")
    assert timestep_limit(scheduler, 0.3) == 301 and timestep_limit(scheduler, 1.0) == 1000

    class Ctx:  # records the bound the loss asks for and answers its top value
        highs = []

        def randint(self, high):
            self.highs.append(high)
            return torch.full((4,), high - 1)

        def randn(self, *shape):
            return torch.zeros(4, *shape)

    model = load_classifier(trained[0])
    x0 = torch.zeros(4, 1, SIZE, SIZE)
    classifier_loss(model, x0, torch.zeros(4, dtype=torch.long), Ctx(), scheduler=scheduler,
                    max_depth=0.3)  # fmt: skip
    assert Ctx.highs == [301]
    valid = load_split(*store, "calibration")
    table = validate_per_timestep(model, scheduler, XrayDataset(valid), 3, 0, limit=301)
    assert table["t_lo"].tolist() == [0, 100, 201] and table["t_hi"].iloc[-1] == 301
    with pytest.raises(ConfigError, match="max_depth"):
        ClassifierTrainConfig(**TINY, max_depth=0.0)
    # the noise schedule is the diffusion model's only: the classifier section has no such key
    with pytest.raises(ConfigError, match="num_train_timesteps"):
        from_mapping(ClassifierTrainConfig, {"num_train_timesteps": 100})
