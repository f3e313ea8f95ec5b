"""Inversion and counterfactuals with a tiny trained model: exactness, determinism, guidance."""

import shutil

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch
from synthetic_store import make_store

from cxrgen import cli, io
from cxrgen.classifier.config import ClassifierTrainConfig
from cxrgen.classifier.model import load_classifier
from cxrgen.classifier.train import train_classifier
from cxrgen.counterfactual import guidance
from cxrgen.counterfactual.config import CounterfactualConfig
from cxrgen.counterfactual.counterfactual import example_rows, make_counterfactuals
from cxrgen.counterfactual.ddim import decode
from cxrgen.counterfactual.invert import InvertConfig, invert_split
from cxrgen.counterfactual.scores import COLUMNS, difference_scores, top_mean
from cxrgen.data.classes import read_classes
from cxrgen.data.latents import read_trajectory
from cxrgen.diffusion.config import DiffusionTrainConfig
from cxrgen.diffusion.model import load_diffusion
from cxrgen.diffusion.train import train_diffusion
from cxrgen.errors import ConfigError, DataError

SIZE = 16
N_VALID = 8
UNET = dict(block_out_channels=(16, 32), norm_num_groups=8)
TRAIN = dict(batch_size=4, warmup_steps=2, checkpoint_every=10, log_every=5)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A store, a trained diffusion model + classifier, and an inversion (10 steps, batch 3)."""
    root = tmp_path_factory.mktemp("cf")
    store, split = make_store(root / "data", n=24, size=SIZE, n_valid=N_VALID)
    diffusion = root / "diffusion"
    cfg = DiffusionTrainConfig(
        **UNET, **TRAIN, num_train_timesteps=100, attention_head_dim=8, attention_resolutions=(8,),
        lr=2e-3, max_steps=30, n_sample_per_class=1, sample_steps=2,
    )  # fmt: skip
    train_diffusion(store, split, diffusion, cfg, progress=False)
    classifier = root / "classifier"
    ccfg = ClassifierTrainConfig(**UNET, **TRAIN, max_steps=20, valid_bins=2)
    train_classifier(
        store, split, classifier, ccfg, scheduler_dir=diffusion / "scheduler", progress=False
    )
    latents = root / "latents"
    table = invert_split(
        diffusion, store, split, latents, InvertConfig(steps=10, batch_size=3), progress=False
    )
    return dict(
        root=root, store=store, split=split, diffusion=diffusion, classifier=classifier,
        latents=latents, table=table,
    )  # fmt: skip


def counterfactuals(setup, method, scale, name, **cfg):
    out = setup["root"] / name
    scores = make_counterfactuals(
        method, scale, setup["latents"], setup["diffusion"], setup["store"], out,
        CounterfactualConfig(**{"batch_size": 3, **cfg}), setup["classifier"], progress=False,
    )  # fmt: skip
    return out, scores


def load(folder, name):
    return np.load(folder / f"{name}.npy")


def test_inversion_covers_calibration_then_test_and_reconstructs(setup):
    table, latents = setup["table"], setup["latents"]
    split = pd.read_parquet(setup["split"] / "split.parquet")
    held_out = pd.concat(
        [split[split["split"] == name].sort_values("row") for name in ("calibration", "test")]
    )
    assert table["image_id"].tolist() == held_out["image_id"].tolist()
    assert table["split"].tolist() == held_out["split"].tolist()
    assert (table["cond_label"] == 2).all()  # label-blind: every image with the null class
    assert load(latents, "latents").shape == (N_VALID, SIZE, SIZE)
    assert load(latents, "latents").dtype == np.float32
    # 10 steps to t = 50 of 100 with a 30-step model: ~41 dB; the residual is the eps mismatch
    # between the up and the down path (tests/test_ddim.py: exact when eps does not move).
    assert table["recon_psnr"].min() > 35
    assert table["recon_max_abs"].max() < 0.08
    assert table["latent_std"].min() > 0.3  # noised, not the image
    recon = load(latents, "reconstructions")
    store = np.load(setup["store"] / "images.npy")[table["store_row"]] / 65535
    mse = ((recon - store) ** 2).mean(axis=(1, 2))
    np.testing.assert_allclose(table["recon_psnr"], -10 * np.log10(mse), rtol=1e-4)
    meta = io.read_json(latents / "trajectory.json")
    assert meta["timesteps"] == list(range(5, 51, 5)) and meta["conditioning"] == "unconditional"
    assert meta["label_informed"] is False and meta["splits"] == ["calibration", "test"]


def test_more_steps_reconstruct_better(setup):
    def median_psnr(steps):
        cfg = InvertConfig(steps=steps, batch_size=8)
        out = setup["root"] / f"steps{steps}"
        table = invert_split(
            setup["diffusion"], setup["store"], setup["split"], out, cfg, progress=False
        )
        return table["recon_psnr"].median()

    coarse, fine = median_psnr(3), median_psnr(25)
    assert fine > coarse + 3, (coarse, fine)


def test_same_bytes_on_a_rerun_and_float_rounding_across_batch_sizes(setup):
    """Nothing is random. Batched CPU kernels round differently for another batch size (also
    with oneDNN off), so across batch sizes the results agree to float rounding only."""
    cfg = InvertConfig(steps=10, batch_size=3)
    again = setup["root"] / "latents_again"
    invert_split(setup["diffusion"], setup["store"], setup["split"], again, cfg, progress=False)
    other = setup["root"] / "latents_b8"
    cfg = InvertConfig(steps=10, batch_size=8)
    invert_split(setup["diffusion"], setup["store"], setup["split"], other, cfg, progress=False)
    for name in ("latents", "reconstructions"):
        reference = load(setup["latents"], name)
        assert load(again, name).tobytes() == reference.tobytes()
        np.testing.assert_allclose(load(other, name), reference, atol=1e-5, rtol=0)
    for method, scale in (("cfg", 2.0), ("cg", 20.0)):
        a, _ = counterfactuals(setup, method, scale, f"{method}_b3", batch_size=3)
        b, _ = counterfactuals(setup, method, scale, f"{method}_b3_again", batch_size=3)
        c, _ = counterfactuals(setup, method, scale, f"{method}_b8", batch_size=8)
        reference = load(a, "counterfactuals")
        assert load(b, "counterfactuals").tobytes() == reference.tobytes()
        np.testing.assert_allclose(load(c, "counterfactuals"), reference, atol=1e-5, rtol=0)


def test_outputs_agree_with_each_other(setup):
    out, scores = counterfactuals(setup, "cfg", 3.0, "cfg_3")
    cf, diff, absd = (load(out, n) for n in ("counterfactuals", "diff", "absdiff"))
    original = np.load(setup["store"] / "images.npy")[setup["table"]["store_row"]] / 65535
    np.testing.assert_allclose(diff, original - cf, atol=1e-6)
    np.testing.assert_array_equal(absd, np.abs(diff))
    assert cf.dtype == np.float32
    # the stored counterfactual is the CFG decode of the stored latents, toward Normal, in
    # [0, 1]: recomputed here from the latents with the library's own predictor and loop
    unet, _, classes = load_diffusion(setup["diffusion"])
    traj, _ = read_trajectory(setup["latents"])
    target = torch.full((len(cf),), classes.index("Normal"))
    latents = torch.from_numpy(load(setup["latents"], "latents"))[:, None]
    again = decode(guidance.classifier_free(unet, target, 3.0, "fp32"), traj, latents)
    np.testing.assert_allclose(cf, ((again[:, 0] + 1) / 2).clamp(0, 1).numpy(), atol=1e-5)
    assert pd.read_parquet(out / "scores.parquet").equals(scores)
    assert scores["image_id"].tolist() == setup["table"]["image_id"].tolist()
    assert set(COLUMNS) <= set(scores.columns)
    assert (scores["method"] == "cfg").all() and (scores["scale"] == 3.0).all()
    np.testing.assert_allclose(scores["sum_abs"], absd.sum(axis=(1, 2)), rtol=1e-5)
    assert not any("lung" in c for c in scores.columns)  # no score reads a mask
    assert (scores["label_informed"] == False).all()  # noqa: E712
    assert scores["sum_abs"].min() > 0.5  # guidance changed every image
    assert matplotlib.image.imread(out / "examples.png").shape[0] > 100
    assert io.read_json(out / "provenance.json")["inversion"]["steps"] == 10


def test_label_informed_inversion_reads_the_labels_and_is_marked(setup, tmp_path):
    """The counterfactual-explanation mode: each image encoded with its own class; cfg at scale
    0 then gives back the reconstruction of the Normal images only, and the rows say so."""
    latents = tmp_path / "informed"
    cfg = InvertConfig(steps=10, batch_size=3, conditioning="label_informed")
    table = invert_split(setup["diffusion"], setup["store"], setup["split"], latents, cfg,
                         progress=False)  # fmt: skip
    assert table["cond_label"].tolist() == table["label"].tolist()
    assert io.read_json(latents / "trajectory.json")["label_informed"] is True
    out = tmp_path / "cfg0"
    scores = make_counterfactuals(
        "cfg", 0.0, latents, setup["diffusion"], setup["store"], out,
        CounterfactualConfig(batch_size=3), progress=False,
    )  # fmt: skip
    assert scores["label_informed"].all()
    normal = (scores["class_name"] == "Normal").to_numpy()
    recon = load(latents, "reconstructions")
    np.testing.assert_allclose(load(out, "counterfactuals")[normal], recon[normal], atol=1e-5)
    assert np.abs(load(out, "counterfactuals")[~normal] - recon[~normal]).max() > 1e-3


def test_target_conditioning_encodes_every_image_with_the_target_class(setup, tmp_path):
    cfg = InvertConfig(steps=4, batch_size=8, conditioning="target", target_class="Normal")
    table = invert_split(setup["diffusion"], setup["store"], setup["split"], tmp_path / "t",
                         cfg, progress=False)  # fmt: skip
    assert (table["cond_label"] == 0).all()
    with pytest.raises(DataError, match="target_class 'Healthy'"):
        bad = InvertConfig(conditioning="target", target_class="Healthy")
        invert_split(setup["diffusion"], setup["store"], setup["split"], tmp_path / "bad", bad,
                     progress=False)  # fmt: skip


def test_permuted_labels_change_no_latent_map_or_score(setup, tmp_path):
    """Label-blind inference: shuffle the class labels of every evaluated image (store index and
    split) and re-run invert + counterfactual for every label-blind method; every latent,
    counterfactual, map and score column that does not name the label is byte-identical."""
    store, split = tmp_path / "store", tmp_path / "split"
    shutil.copytree(setup["store"], store)
    shutil.copytree(setup["split"], split)
    table = pd.read_parquet(split / "split.parquet")
    held = table["split"].isin(["calibration", "test"]).to_numpy()
    rng = np.random.default_rng(0)
    labels = table["label"].to_numpy().copy()
    while np.array_equal(labels[held], table["label"].to_numpy()[held]):
        labels[held] = rng.permutation(labels[held])
    table["label"] = labels
    names = read_classes(split / "classes.json")
    table.loc[held, "class_name"] = [names[v] for v in labels[held]]
    table.to_parquet(split / "split.parquet")
    index = pd.read_parquet(store / "index.parquet")
    index["class_name"] = index["row"].map(table.set_index("row")["class_name"])
    index.to_parquet(store / "index.parquet")

    cfg = InvertConfig(steps=10, batch_size=3)
    shuffled = tmp_path / "latents"
    invert_split(setup["diffusion"], store, split, shuffled, cfg, progress=False)
    for name in ("latents", "reconstructions"):
        assert load(shuffled, name).tobytes() == load(setup["latents"], name).tobytes()
    stargan = setup["root"] / "stargan"
    if not stargan.exists():
        train_tiny_stargan(setup)
    diffusion = setup["diffusion"]
    for method, scale, model in (
        ("cfg", 2.0, diffusion), ("cg", 20.0, diffusion), ("renoise", 2.0, diffusion),
        ("thor", 2.0, diffusion), ("msr", 2.0, diffusion), ("stargan", 0.5, stargan),
    ):  # fmt: skip
        ccfg = CounterfactualConfig(batch_size=3, first_pass="cfg/2", mask_quantile=0.8)
        runs = []
        for latents, st, name in ((setup["latents"], setup["store"], "a"), (shuffled, store, "b")):
            out = tmp_path / f"{method}_{name}"
            scores = make_counterfactuals(method, scale, latents, model, st, out, ccfg,
                                          setup["classifier"], progress=False,
                                          first_pass_dir=tmp_path / f"cfg_{name}")  # fmt: skip
            runs.append((out, scores))
        (a, sa), (b, sb) = runs
        for array in ("counterfactuals", "diff", "absdiff"):
            assert load(a, array).tobytes() == load(b, array).tobytes(), (method, array)
        assert not sa["label"].equals(sb["label"])  # the labels did change ...
        blind = [c for c in sa.columns if c not in ("label", "class_name")]
        pd.testing.assert_frame_equal(sa[blind], sb[blind])  # ... and nothing else


def test_msr_keeps_the_original_outside_its_mask_and_resamples_inside(setup, tmp_path):
    """Mask, stitch and re-sample: outside the dilated first-pass mask the counterfactual is
    the original to the last bit of float32 rounding; the mask covers the quantile's share
    of the calibration pixels; a larger quantile masks less; seeds change only the inside."""
    first, _ = counterfactuals(setup, "cfg", 2.0, "msr_first")
    runs = {}
    for q, seed in ((0.7, 0), (0.9, 0), (0.7, 1)):
        cfg = CounterfactualConfig(batch_size=3, mask_quantile=q, mask_dilation=0.0, seed=seed)
        out = tmp_path / f"msr_{q}_{seed}"
        make_counterfactuals("msr", 2.0, setup["latents"], setup["diffusion"], setup["store"],
                             out, cfg, first_pass_dir=first, progress=False)  # fmt: skip
        runs[q, seed] = load(out, "diff")
    table = pd.read_parquet(first / "scores.parquet")
    cal = (table["split"] == "calibration").to_numpy()
    maps = np.clip(load(first, "diff"), 0, None)
    from scipy import ndimage

    smoothed = np.stack([ndimage.gaussian_filter(m, 0.03 * SIZE, mode="reflect") for m in maps])
    for q in (0.7, 0.9):
        inside = smoothed > np.quantile(smoothed[cal], q)
        changed = np.abs(runs[q, 0]) > 1e-6  # float32 rounding of the [-1, 1] round trip
        assert not changed[~inside].any()  # the original outside the mask
        assert changed[inside].mean() > 0.9  # re-sampled inside it
        assert abs(inside[cal].mean() - (1 - q)) < 0.02
    assert (np.abs(runs[0.9, 0]) > 1e-6).sum() < (np.abs(runs[0.7, 0]) > 1e-6).sum()
    assert not np.array_equal(runs[0.7, 0], runs[0.7, 1])
    same_mask = (np.abs(runs[0.7, 0]) > 1e-6) == (np.abs(runs[0.7, 1]) > 1e-6)
    assert same_mask.mean() > 0.99  # same mask, other noise inside it


def test_msr_refuses_a_first_pass_of_other_images(setup, tmp_path):
    first, _ = counterfactuals(setup, "cfg", 1.0, "msr_other")
    scores = pd.read_parquet(first / "scores.parquet")
    scores["image_id"] = scores["image_id"][::-1].to_numpy()
    scores.to_parquet(first / "scores.parquet")
    with pytest.raises(DataError, match="other images than the latents"):
        make_counterfactuals("msr", 1.0, setup["latents"], setup["diffusion"], setup["store"],
                             tmp_path / "o", CounterfactualConfig(), first_pass_dir=first,
                             progress=False)  # fmt: skip
    with pytest.raises(ConfigError, match="first-pass counterfactual"):
        make_counterfactuals(
            "msr",
            1.0,
            setup["latents"],
            setup["diffusion"],
            setup["store"],
            tmp_path / "o",
            CounterfactualConfig(),
            progress=False,
        )
    with pytest.raises(ConfigError, match="first_pass must be"):
        CounterfactualConfig(first_pass="msr/1")


def test_cfg_single_forward_equals_two_forwards(setup):
    unet, _, _ = load_diffusion(setup["diffusion"])
    x = torch.randn(4, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 0, 1, 0])
    null = torch.full_like(labels, guidance.null_label(unet))
    with torch.no_grad():
        cond = unet(x, 30, class_labels=labels).sample
        uncond = unet(x, 30, class_labels=null).sample
    got = guidance.classifier_free(unet, labels, 2.5)(x, 30)
    torch.testing.assert_close(got, cond + 2.5 * (cond - uncond), atol=1e-5, rtol=1e-5)


def test_classifier_guidance_is_the_scaled_log_prob_gradient(setup):
    unet, scheduler, _ = load_diffusion(setup["diffusion"])
    classifier = load_classifier(setup["classifier"])
    x = torch.randn(3, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    targets, null = torch.zeros(3, dtype=torch.long), torch.full((3,), 2)
    bars = scheduler.alphas_cumprod
    plain = guidance.conditional(unet, null)(x, 40)
    guided = guidance.classifier_guided(unet, classifier, bars, null, targets, 7.0)(x, 40)
    xg = x.clone().requires_grad_(True)
    torch.log_softmax(classifier(xg, 40), -1)[:, 0].sum().backward()
    expected = plain - 7.0 * (1 - bars[40]).sqrt() * xg.grad
    torch.testing.assert_close(guided, expected, atol=1e-5, rtol=1e-4)
    unguided = guidance.classifier_guided(unet, classifier, bars, null, targets, 0.0)(x, 40)
    torch.testing.assert_close(unguided, plain)


def test_classifier_guidance_raises_the_target_probability(setup):
    classifier = load_classifier(setup["classifier"])

    def log_odds_normal(folder):  # mean log p(Normal) / p(Opacity) at t = 0
        x = torch.from_numpy(load(folder, "counterfactuals"))[:, None] * 2 - 1
        with torch.no_grad():
            logits = classifier(x, 0)
        return (logits[:, 0] - logits[:, 1]).mean().item()

    odds = [log_odds_normal(counterfactuals(setup, "cg", s, f"cg_{s}")[0]) for s in (0, 50, 300)]
    assert odds[0] < odds[1] < odds[2] and odds[2] > odds[0] + 0.1, odds


def train_tiny_stargan(setup):
    from cxrgen.gan.config import StarGANTrainConfig
    from cxrgen.gan.stargan_train import train_stargan

    tiny = dict(base_dim=8, max_conv_dim=16, style_dim=8, latent_dim=4, mapping_dim=16)
    cfg = StarGANTrainConfig(
        **tiny, g_downsamplings=2, batch_size=4, max_steps=2, checkpoint_every=2,
        n_sample_per_domain=1,
    )  # fmt: skip
    train_stargan(setup["store"], setup["split"], setup["root"] / "stargan", cfg, progress=False)


def test_stargan_translates_the_same_images(setup):
    model = setup["root"] / "stargan"
    if not model.exists():
        train_tiny_stargan(setup)

    def run(scale, name, batch_size=3):
        out = setup["root"] / name
        scores = make_counterfactuals(
            "stargan", scale, setup["latents"], model, setup["store"], out,
            CounterfactualConfig(batch_size=batch_size), progress=False,
        )  # fmt: skip
        return load(out, "counterfactuals"), scores

    own, scores = run(0.0, "sg0")
    assert scores["image_id"].tolist() == setup["table"]["image_id"].tolist()
    assert scores["guided_sum_abs"].isna().all() and (scores["method"] == "stargan").all()
    assert run(0.0, "sg0_again")[0].tobytes() == own.tobytes()
    mixed = run(1.0, "sg1")[0]
    np.testing.assert_allclose(run(1.0, "sg1_b8", batch_size=8)[0], mixed, atol=1e-5, rtol=0)
    assert np.abs(mixed - own).max() > 1e-3  # a random style is another translation
    with pytest.raises(ConfigError, match="style mix weight"):
        run(1.5, "sg_bad")


def test_bad_requests_are_named(setup):
    with pytest.raises(ConfigError, match="target_class 'Healthy'"):
        counterfactuals(setup, "cfg", 1.0, "bad1", target_class="Healthy")
    with pytest.raises(ConfigError, match="method must be one of"):
        counterfactuals(setup, "ddpm", 1.0, "bad2")
    with pytest.raises(ConfigError, match="needs the guidance classifier"):
        make_counterfactuals(
            "cg", 1.0, setup["latents"], setup["diffusion"], setup["store"],
            setup["root"] / "bad3", CounterfactualConfig(), None, progress=False,
        )  # fmt: skip
    with pytest.raises(DataError, match="run invert"):
        make_counterfactuals(
            "cfg", 1.0, setup["root"], setup["diffusion"], setup["store"],
            setup["root"] / "bad4", CounterfactualConfig(), progress=False,
        )  # fmt: skip
    with pytest.raises(ConfigError, match="conditioning must be one of"):
        InvertConfig(conditioning="null")
    assert not (setup["root"] / "bad1" / "counterfactuals.npy").exists()


def test_cli_inverts_and_writes_one_folder_per_scale(setup, tmp_path):
    common = ["--model", str(setup["diffusion"]), "--store", str(setup["store"])]
    argv = ["-q", "invert", *common, "--split-dir", str(setup["split"])]
    assert cli.main([*argv, "--output", str(tmp_path / "lat"), "--steps", "4"]) == 0
    argv = ["-q", "counterfactual", "--method", "cfg", "--scale", "1", "2.5", *common]
    argv += ["--latents", str(tmp_path / "lat"), "--output", str(tmp_path / "cf")]
    assert cli.main(argv) == 0
    for scale in ("1", "2.5"):
        scores = pd.read_parquet(tmp_path / "cf" / "cfg" / scale / "scores.parquet")
        assert len(scores) == N_VALID and scores["scale"].iloc[0] == float(scale)


def test_difference_scores_exact_values():
    original = np.zeros((2, 4, 4), np.float32)
    counterfactual = np.zeros((2, 4, 4), np.float32)
    original[0, 1, 1] = 0.5  # a bright spot the counterfactual removed
    counterfactual[0, 2, 2] = 0.25  # and a spot it added
    original[1] = 0.1
    s = difference_scores(original, counterfactual, original, top_fraction=2 / 16)
    np.testing.assert_allclose(s["sum_abs"], [0.75, 1.6], rtol=1e-6)
    np.testing.assert_allclose(s["mean_abs"], [0.75 / 16, 0.1], rtol=1e-6)
    np.testing.assert_allclose(s["top_mean_abs"], [0.375, 0.1], rtol=1e-6)
    np.testing.assert_allclose(s["sum_removed"], [0.5, 1.6], rtol=1e-6)
    np.testing.assert_allclose(s["guided_sum_abs"], s["sum_abs"], rtol=1e-6)
    assert s["hpf_energy"][0] > 0 and s["hpf_energy"][1] < 1e-10  # a constant has no HF
    assert np.isnan(difference_scores(original, counterfactual, None)["guided_sum_abs"]).all()
    assert set(s) == set(COLUMNS)
    np.testing.assert_allclose(top_mean(np.arange(10.0)[None], 0.01), [9.0])


def test_example_rows_pick_extremes_per_class():
    table = pd.DataFrame(
        {"row": range(6), "label": [0, 0, 0, 1, 1, 1], "sum_abs": [5, 1, 3, 2, 9, 4]}
    )
    assert example_rows(table, per_class=1) == [0, 1, 4, 3]
    assert example_rows(table.iloc[:1], per_class=2) == [0]


def test_a_model_that_does_not_fit_names_what_to_set():
    """The size and class checks of invert; where another data set's model scores the images
    (the workflow's apply_model), the errors name that setting and the key to change."""
    from types import SimpleNamespace

    from cxrgen.counterfactual.invert import check_model_fits

    unet = SimpleNamespace(config=SimpleNamespace(sample_size=32))
    classes = ["Normal", "Lung Opacity"]
    fits = SimpleNamespace(classes=tuple(classes), shape=(32, 32))
    check_model_fits(unet, classes, fits)
    applied = "datasets.ralo.apply_model: rsna"
    small = SimpleNamespace(classes=tuple(classes), shape=(16, 16))
    with pytest.raises(DataError, match="use the store it was trained on"):
        check_model_fits(unet, classes, small)
    with pytest.raises(DataError, match=f"takes 32x32 .* 16x16: {applied}: .*preprocess.size 32"):
        check_model_fits(unet, classes, small, applied)
    other = SimpleNamespace(classes=("Normal", "COVID-19"), shape=(32, 32))
    with pytest.raises(DataError, match=f"{applied}: split .* model's classes"):
        check_model_fits(unet, classes, other, applied)
