"""Synthetic-set generation: counts, shapes, the index table, batch-size independence."""

import numpy as np
import pandas as pd
import pytest
from gan_store import DOMAINS3, make_domain_store

from cxrgen import io
from cxrgen.data.classes import read_classes
from cxrgen.errors import ConfigError, DataError
from cxrgen.gan.config import DCGANTrainConfig, StarGANTrainConfig
from cxrgen.gan.dcgan_train import train_dcgan
from cxrgen.gan.generate_synthetic import GenerateConfig, generate_synthetic
from cxrgen.gan.stargan_train import train_stargan

SIZE = 16
N_VALID = 3
STARGAN = dict(
    base_dim=8,
    max_conv_dim=16,
    style_dim=8,
    latent_dim=4,
    mapping_dim=16,
    g_downsamplings=2,
    batch_size=4,
    max_steps=2,
    checkpoint_every=2,
    log_every=1,
    n_sample_per_domain=1,
)
DCGAN = dict(
    base_dim=8,
    max_conv_dim=16,
    latent_dim=6,
    embed_dim=3,
    upsamplings=2,
    batch_size=4,
    max_steps=2,
    checkpoint_every=2,
    log_every=1,
    n_sample_per_class=1,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    store = make_domain_store(root, DOMAINS3, n_train=4, n_valid=N_VALID, size=SIZE)
    train_stargan(*store, root / "stargan", StarGANTrainConfig(**STARGAN), progress=False)
    train_dcgan(*store, root / "dcgan", DCGANTrainConfig(**DCGAN), progress=False)
    return root, store


def test_stargan_set_counts_index_and_images(models, tmp_path):
    root, store = models
    cfg = GenerateConfig(num_outs_per_domain=2, batch_size=5)
    index = generate_synthetic(root / "stargan", *store, tmp_path, cfg, progress=False)
    k = len(DOMAINS3)
    per_mode = k * N_VALID * (k - 1) * 2
    assert len(index) == 2 * per_mode
    assert index["row"].tolist() == list(range(len(index)))
    assert list(index.columns) == [
        "row", "model", "mode", "source_row", "source_image_id", "source_domain",
        "target_domain", "target_label", "output", "reference_row", "reference_image_id",
    ]  # fmt: skip
    assert (index["source_domain"] != index["target_domain"]).all()
    counts = index.groupby(["mode", "source_domain", "target_domain"]).size()
    assert len(counts) == 2 * k * (k - 1) and (counts == N_VALID * 2).all()
    assert set(index.groupby(["mode", "source_row", "target_domain"])["output"].apply(tuple)) == {
        (0, 1)
    }
    split = pd.read_parquet(store[1] / "split.parquet").set_index("row")
    valid = split[split["split"] == "valid"]
    assert set(index["source_row"]) == set(valid.index)
    assert (split.loc[index["source_row"], "class_name"].to_numpy() == index["source_domain"]).all()
    assert (split.loc[index["source_row"], "image_id"].to_numpy() == index["source_image_id"]).all()
    latent = index[index["mode"] == "latent"]
    assert (latent["reference_row"] == -1).all() and (latent["reference_image_id"] == "").all()
    ref = index[index["mode"] == "reference"]
    assert set(ref["reference_row"]) <= set(valid.index)
    assert (split.loc[ref["reference_row"], "class_name"].to_numpy() == ref["target_domain"]).all()
    images = np.load(tmp_path / "images.npy", mmap_mode="r")
    assert images.shape == (len(index), SIZE, SIZE) and images.dtype == np.uint8
    assert images.std() > 0
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "index.parquet"), index)
    assert read_classes(tmp_path / "classes.json") == DOMAINS3
    prov = io.read_json(tmp_path / "provenance.json")
    assert prov["model_kind"] == "stargan" and prov["config"]["num_outs_per_domain"] == 2


def test_result_does_not_depend_on_batch_size(models, tmp_path):
    root, store = models
    for name in ("stargan", "dcgan"):
        arrays = []
        for b in (1, 7):
            cfg = GenerateConfig(
                num_outs_per_domain=2, batch_size=b, samples_per_class=3, dtype="uint16"
            )
            out = tmp_path / f"{name}-{b}"
            generate_synthetic(root / name, *store, out, cfg, progress=False)
            arrays.append(np.load(out / "images.npy").astype(np.int64))
        # same draws per output; at most float rounding between batched kernels
        assert np.abs(arrays[0] - arrays[1]).max() <= 2, name
        assert np.abs(arrays[0] - arrays[1]).mean() < 0.1, name


def test_subsets_modes_dcgan_and_errors(models, tmp_path):
    root, store = models
    cfg = GenerateConfig(num_outs_per_domain=3, modes=("latent",), max_sources_per_domain=2)
    index = generate_synthetic(root / "stargan", *store, tmp_path / "sub", cfg, progress=False)
    assert len(index) == 3 * 2 * 2 * 3 and set(index["mode"]) == {"latent"}
    assert index.groupby("source_domain")["source_row"].nunique().tolist() == [2, 2, 2]
    cfg = GenerateConfig(samples_per_class=4, batch_size=3)
    index = generate_synthetic(root / "dcgan", *store, tmp_path / "dc", cfg, progress=False)
    assert len(index) == 4 * len(DOMAINS3) and set(index["mode"]) == {"sample"}
    assert index.groupby("target_domain")["output"].apply(list).tolist() == [[0, 1, 2, 3]] * 3
    assert (index["source_row"] == -1).all()
    assert np.load(tmp_path / "dc" / "images.npy").shape == (12, SIZE, SIZE)
    with pytest.raises(DataError, match="no trained GAN"):
        generate_synthetic(tmp_path, *store, tmp_path / "x", cfg, progress=False)
    other = make_domain_store(tmp_path / "other", ["A", "B"], size=SIZE)
    with pytest.raises(DataError, match="trained on classes"):
        generate_synthetic(root / "dcgan", *other, tmp_path / "y", cfg, progress=False)
    with pytest.raises(ConfigError, match="modes"):
        GenerateConfig(modes=("latent", "bogus"))
