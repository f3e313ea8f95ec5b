"""GAN training: determinism, exact resume after a kill (lambda_ds continues), outputs, errors."""

import shutil

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch
from gan_store import DOMAINS3, make_domain_store
from safetensors.torch import load_file

from cxrgen import io
from cxrgen.config import from_mapping
from cxrgen.errors import ConfigError
from cxrgen.gan import stargan_train
from cxrgen.gan.config import DCGANTrainConfig, StarGANTrainConfig
from cxrgen.gan.dcgan import load_dcgan
from cxrgen.gan.dcgan_train import train_dcgan
from cxrgen.gan.stargan_losses import ds_weight
from cxrgen.gan.stargan_nets import load_stargan
from cxrgen.gan.stargan_train import train_stargan
from cxrgen.training.checkpoint import checkpoint_path

SIZE = 16
TINY = dict(
    base_dim=8,
    max_conv_dim=16,
    style_dim=8,
    latent_dim=4,
    mapping_dim=16,
    g_downsamplings=2,
    batch_size=4,
    max_steps=8,
    checkpoint_every=4,
    keep_checkpoints=3,
    log_every=2,
    ds_iter=10,
    n_sample_per_domain=1,
)
DC_TINY = dict(
    base_dim=8,
    max_conv_dim=16,
    latent_dim=6,
    embed_dim=3,
    upsamplings=2,
    batch_size=4,
    max_steps=6,
    checkpoint_every=3,
    keep_checkpoints=2,
    log_every=3,
    n_sample_per_class=2,
)
EMA_NETS = ("generator", "mapping_network", "style_encoder")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_domain_store(tmp_path_factory.mktemp("data"), DOMAINS3, n_train=4, size=SIZE)


@pytest.fixture(scope="module")
def trained(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("stargan")
    history = train_stargan(*store, out, StarGANTrainConfig(**TINY), progress=False)
    return out, history


def tensors(out, names=EMA_NETS):
    return {f"{n}/{k}": v for n in names for k, v in load_file(out / f"{n}.safetensors").items()}


def assert_same(a, b, names=EMA_NETS):
    ta, tb = tensors(a, names), tensors(b, names)
    assert ta.keys() == tb.keys()
    for key in ta:
        assert torch.equal(ta[key], tb[key]), key


def test_outputs_and_loaded_model(trained):
    out, history = trained
    assert io.read_json(out / "classes.json")["names"] == list(DOMAINS3)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "loss.parquet"), history)
    for name in ("loss.png", "samples.png"):  # decodable pictures with something drawn
        picture = matplotlib.image.imread(out / name)
        assert min(picture.shape[:2]) > 2 * SIZE and picture.std() > 0.01, name
    assert not (out / "discriminator.safetensors").exists()  # only the EMA nets are outputs
    model = load_stargan(out)
    assert model.classes == tuple(DOMAINS3) and model.image_size == (SIZE, SIZE)
    x = torch.zeros(2, 1, SIZE, SIZE)
    y = torch.tensor([1, 2])
    assert model.translate_latent(x, y, torch.randn(2, 4)).shape == (2, 1, SIZE, SIZE)
    g = torch.Generator().manual_seed(0)
    ref_a, ref_b = (
        torch.rand(2, 1, SIZE, SIZE, generator=g),
        torch.rand(2, 1, SIZE, SIZE, generator=g),
    )
    same = model.translate_reference(x, y, ref_a)
    assert torch.equal(same, model.translate_reference(x, y, ref_a))  # deterministic
    assert not torch.allclose(same, model.translate_reference(x, y, ref_b))  # the style counts
    assert not torch.allclose(same, model.translate_reference(x, y.flip(0), ref_a))  # the domain
    assert history["step"].tolist() == [2, 4, 6, 8]
    for prefix in ("d_latent_", "d_ref_"):
        assert {prefix + k for k in ("real", "fake", "reg")} <= set(history.columns)
    for prefix in ("g_latent_", "g_ref_"):
        assert {prefix + k for k in ("adv", "sty", "ds", "cyc")} <= set(history.columns)
    assert np.isfinite(history.drop(columns="step").to_numpy()).all()
    # lambda_ds used at the last step of each interval: 2 * (1 - (step - 1) / ds_iter)
    expected = [ds_weight(2.0, 10, s - 1) for s in history["step"]]
    assert history["lambda_ds"].to_numpy() == pytest.approx(expected)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "loss.parquet"), history)
    prov = io.read_json(out / "provenance.json")
    assert prov["stage"] == "train_stargan" and prov["config"]["lambda_ds"] == 2.0
    assert prov["final_lambda_ds"] == pytest.approx(ds_weight(2.0, 10, 8))
    grid = matplotlib.image.imread(out / "samples.png")
    assert grid.ndim == 3 and grid.shape[0] > 300 and grid.shape[1] > 300
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "step-00000004.pt",
        "step-00000008.pt",
    ]


def test_same_seed_same_weights_other_seed_differs(store, trained, tmp_path):
    again = tmp_path / "again"
    train_stargan(*store, again, StarGANTrainConfig(**TINY), progress=False)
    assert_same(trained[0], again)
    other = tmp_path / "other"
    train_stargan(
        *store, other, StarGANTrainConfig(**{**TINY, "seed": 1, "max_steps": 1}), progress=False
    )
    a, b = tensors(trained[0]), tensors(other)
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_killed_run_resumes_exactly_and_lambda_ds_continues(
    store, trained, tmp_path, monkeypatch, caplog
):
    """The run dies right after its step-4 checkpoint; re-running resumes to the same weights."""
    out = tmp_path / "killed"
    calls = []

    def die(*args, **kwargs):
        calls.append(1)
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(stargan_train, "write_labelled_grid", die)
    with pytest.raises(KeyboardInterrupt):
        train_stargan(
            *store, out, StarGANTrainConfig(**{**TINY, "sample_every": 4}), progress=False
        )
    assert calls and not (out / "generator.safetensors").exists()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000004.pt"]
    monkeypatch.undo()
    with caplog.at_level("INFO"):
        history = train_stargan(*store, out, StarGANTrainConfig(**TINY), progress=False)
    assert "resuming from step 4" in caplog.text
    assert_same(trained[0], out)
    pd.testing.assert_frame_equal(
        history.drop(columns="images_per_s"), trained[1].drop(columns="images_per_s")
    )
    assert io.read_json(out / "provenance.json")["resumed_from_step"] == 4


def test_resume_reads_lambda_ds_from_the_checkpoint(store, trained, tmp_path):
    """The decaying weight is state, not recomputed from the step: an edited value continues."""
    out = tmp_path / "edited"
    (out / "checkpoints").mkdir(parents=True)
    payload = torch.load(
        checkpoint_path(trained[0] / "checkpoints", 4), map_location="cpu", weights_only=True
    )
    assert payload["extra"]["state"]["lambda_ds"] == pytest.approx(ds_weight(2.0, 10, 4))
    payload["extra"]["state"]["lambda_ds"] = 1.0
    torch.save(payload, checkpoint_path(out / "checkpoints", 4))
    history = train_stargan(*store, out, StarGANTrainConfig(**TINY), progress=False)
    resumed = history[history["step"] > 4]
    # steps 4..7 use 1.0, 0.8, 0.6, 0.4 (decrement 2 / ds_iter per step); rows log steps 5 and 7
    assert resumed["lambda_ds"].to_numpy() == pytest.approx([0.8, 0.4])
    assert io.read_json(out / "provenance.json")["final_lambda_ds"] == pytest.approx(0.2)


def test_dcgan_trains_deterministically_and_resumes(store, tmp_path):
    cfg = DCGANTrainConfig(**DC_TINY)
    first = tmp_path / "a"
    history = train_dcgan(*store, first, cfg, progress=False)
    assert history["step"].tolist() == [3, 6]
    assert {"d_real", "d_fake", "g_adv"} <= set(history.columns)
    model = load_dcgan(first)
    assert model.classes == tuple(DOMAINS3)
    z = torch.randn(3, 6)
    assert model.sample(z, torch.tensor([0, 1, 2])).shape == (3, 1, SIZE, SIZE)
    grid = matplotlib.image.imread(first / "samples.png")
    assert grid.shape[0] > 100
    resumed = tmp_path / "b"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copy(first / "checkpoints" / "step-00000003.pt", resumed / "checkpoints")
    train_dcgan(*store, resumed, cfg, progress=False)
    assert_same(first, resumed, ("generator",))


@pytest.mark.parametrize(
    ("classes", "splits", "overrides", "message"),
    [
        (
            DOMAINS3,
            None,
            {"g_downsamplings": 5},
            r"16x16 is not divisible by 2\*\*g_downsamplings = 32",
        ),
        (DOMAINS3, None, {"batch_size": 32}, "larger than the 12 training images"),
        (DOMAINS3, {"Non-COVID": (0, 3)}, {}, r"\['Non-COVID'\] have no training images"),
        (["Normal"], None, {}, "at least 2 classes"),
    ],
)
def test_impossible_configs_are_config_errors(tmp_path, classes, splits, overrides, message):
    store = make_domain_store(tmp_path, classes, n_train=4, size=SIZE, splits=splits)
    with pytest.raises(ConfigError, match=message):
        train_stargan(
            *store, tmp_path / "out", StarGANTrainConfig(**{**TINY, **overrides}), progress=False
        )


def test_config_checks_and_yaml_mapping():
    cfg = from_mapping(StarGANTrainConfig, {"lambda_ds": 2, "ds_iter": 100}, "train_stargan")
    assert cfg.lambda_ds == 2.0 and cfg.adam_beta1 == 0.0 and cfg.adam_beta2 == 0.99
    assert (cfg.lr, cfg.mapping_lr, cfg.weight_decay, cfg.ema_decay) == (1e-4, 1e-6, 1e-4, 0.999)
    with pytest.raises(ConfigError, match="w_hpf must be 0"):
        StarGANTrainConfig(w_hpf=1.0)
    with pytest.raises(ConfigError, match="unknown key"):
        from_mapping(StarGANTrainConfig, {"lambda_dss": 1})
    with pytest.raises(ConfigError, match="mixed_precision"):
        StarGANTrainConfig(mixed_precision="fp16")
    with pytest.raises(ConfigError, match="ds_iter"):
        StarGANTrainConfig(ds_iter=0)
    assert DCGANTrainConfig().adam_beta1 == 0.5
