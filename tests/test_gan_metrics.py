"""FID / LPIPS: pytorch-fid's distance on known Gaussians, aggregation, the real InceptionV3 and
lpips code paths with seeded random weights, the StarGAN v2 protocol (torchvision Inception),
offline weight lookup, the optional path, the network column and the paper's protocol match."""

import logging
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from gan_store import DOMAINS3, make_domain_store
from PIL import Image
from pytorch_fid import inception as pf
from pytorch_fid.fid_score import calculate_frechet_distance

from cxrgen import io
from cxrgen.classifier.model import NoiseAwareClassifier, save_classifier
from cxrgen.data.classes import write_classes
from cxrgen.metrics import weights
from cxrgen.metrics.fid import (
    PYTORCH_FID_NETWORK,
    STARGAN_V2_NETWORK,
    ClassifierFeatures,
    ImageNetInceptionFeatures,
    InceptionFeatures,
    Stats,
    frechet_distance,
    gaussian_stats,
)
from cxrgen.metrics.gan_metrics import GanMetricsConfig, evaluate_gan, network_of
from cxrgen.metrics.gan_table import COLUMNS, add_means, frechet_rows
from cxrgen.metrics.lpips_diversity import LPIPS_NETWORK, PairwiseLPIPS
from cxrgen.metrics.paper import PAPER_PER_DOMAIN, _paper_cells, paper_comparison, paper_domain

SIZE = 16
pytestmark = [
    pytest.mark.filterwarnings("ignore:The `disp` argument:DeprecationWarning"),
    pytest.mark.usefixtures("one_torch_thread"),
]


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(pf, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    return home


def test_frechet_distance_is_pytorch_fids_on_known_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    v1, v2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    a, b = Stats(mu1, np.diag(v1), 100), Stats(mu2, np.diag(v2), 100)
    analytic = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()
    assert frechet_distance(a, b) == pytest.approx(analytic)
    assert frechet_distance(a, b) == calculate_frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-9)
    x = np.random.default_rng(0).standard_normal((50, 4))
    stats = gaussian_stats(x)
    np.testing.assert_allclose(stats.mu, x.mean(0))
    np.testing.assert_allclose(stats.sigma, np.cov(x, rowvar=False))


def gaussian(rng, n, shift, scale, d=3):
    return shift + scale * rng.standard_normal((n, d))


def test_per_task_and_per_target_aggregation():
    rng = np.random.default_rng(1)
    real = {d: gaussian(rng, 400, i, 1.0 + i) for i, d in enumerate(DOMAINS3)}
    real_stats = {d: gaussian_stats(f) for d, f in real.items()}
    real_all = gaussian_stats(np.concatenate(list(real.values())))
    features, groups, offset = {}, [], 0
    for s in DOMAINS3:
        for t in DOMAINS3:
            if s != t:
                rows = np.arange(offset, offset + 60)
                features[offset] = gaussian(rng, 60, rng.uniform(-1, 1), rng.uniform(0.5, 2))
                groups.append(("latent", s, t, rows))
                offset += 60
    for t in DOMAINS3:  # a DCGAN-style class group
        rows = np.arange(offset, offset + 40)
        features[offset] = gaussian(rng, 40, 0.5, 1.5)
        groups.append(("sample", "-", t, rows))
        offset += 40
    table = pd.DataFrame(
        frechet_rows("fid", "m", groups, lambda r: features[r[0]], real_stats, real_all)
    ).assign(network="net")
    table = add_means(table)
    assert set(table["network"]) == {"net"}  # means keep the network of their tasks

    def pick(mode, source, target):
        keep = (table["mode"] == mode) & (table["source"] == source) & (table["target"] == target)
        return table[keep]

    for mode, s, t, rows in groups:
        got = pick(mode, s, t)
        st = gaussian_stats(features[rows[0]])
        expected = calculate_frechet_distance(
            st.mu, st.sigma, real_stats[t].mu, real_stats[t].sigma
        )
        assert got["value"].item() == pytest.approx(expected) and got["n"].item() == len(rows)
    for t in DOMAINS3:  # the paper's per-target FID: mean over the other source domains
        tasks = pd.concat([pick("latent", s, t) for s in DOMAINS3])
        assert len(tasks) == 2
        mean = pick("latent", "mean", t)
        assert mean["value"].item() == pytest.approx(tasks["value"].mean())
        assert mean["n"].item() == 120 and mean["status"].item() == "ok"
    overall = table.query("mode == 'latent' and source == 'mean' and target == 'mean'")
    assert overall["value"].item() == pytest.approx(table.iloc[:6]["value"].mean())
    pooled = table.query("mode == 'sample' and target == 'all'")
    allf = np.concatenate([features[g[3][0]] for g in groups if g[0] == "sample"])
    st = gaussian_stats(allf)
    expected = calculate_frechet_distance(st.mu, st.sigma, real_all.mu, real_all.sigma)
    assert pooled["value"].item() == pytest.approx(expected) and pooled["n"].item() == 120
    assert table.query("mode == 'sample' and source == 'mean'").empty


def test_real_inception_and_lpips_code_paths_with_random_weights():
    net = weights.build_inception(random_init=True, seed=3)
    assert isinstance(net, pf.InceptionV3) and net.resize_input and net.normalize_input
    again = weights.build_inception(random_init=True, seed=3)
    for p, q in zip(net.parameters(), again.parameters(), strict=True):
        assert torch.equal(p, q)
    x = torch.rand(2, 1, SIZE, SIZE)
    feats = InceptionFeatures(net, torch.device("cpu"))(x)
    assert feats.shape == (2, 2048) and np.isfinite(feats).all() and feats.std() > 0
    lp = weights.build_lpips(random_init=True, seed=0)
    diversity = PairwiseLPIPS(lp, torch.device("cpu"), min_size=64)
    value = diversity(torch.rand(3, 1, SIZE, SIZE))
    assert value > 0 and math.isfinite(value)
    assert diversity(torch.full((3, 1, SIZE, SIZE), 0.5)) == pytest.approx(0, abs=1e-7)
    assert math.isnan(diversity(torch.rand(1, 1, SIZE, SIZE)))


class InputRecorder(torch.nn.Module):
    """A stand-in network: keeps its input, returns the per-channel means as 'features'."""

    def forward(self, x):
        self.seen = x
        return x.mean(dim=(2, 3))


def test_stargan_v2_input_is_imagenet_normalised_299_rgb():
    stub = InputRecorder()
    extractor = ImageNetInceptionFeatures(stub, torch.device("cpu"))
    feats = extractor(torch.full((2, 1, 5, 7), 0.5))
    assert stub.seen.shape == (2, 3, 299, 299)
    # by hand: (0.5 - ImageNet mean) / ImageNet std, per channel
    by_hand = [(0.5 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (0.5 - 0.406) / 0.225]
    np.testing.assert_allclose(feats, [by_hand, by_hand], rtol=1e-5)
    np.testing.assert_allclose(stub.seen[0, :, 100, 200].numpy(), by_hand, rtol=1e-5)
    # the eval transform of StarGAN v2 (PIL resize to 299, ToTensor, Normalize) on uint8 images,
    # up- and downsampled: equal up to PIL's rounding to whole grey levels
    rng = np.random.default_rng(0)
    pil_like = torchvision.transforms.Compose(
        [
            torchvision.transforms.Resize([299, 299]),
            torchvision.transforms.ToTensor(),
            torchvision.transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    one_level = 1 / 255 / 0.224
    for size in (37, 400):
        image = rng.integers(0, 256, (size, size)).astype(np.uint8)
        expected = pil_like(Image.fromarray(image).convert("RGB"))
        extractor(torch.from_numpy(image / 255.0).float()[None, None])
        diff = (stub.seen[0] - expected).abs()
        assert diff.max() < 1.5 * one_level and diff.mean() < 0.5 * one_level


def stargan_v2_blocks(net):
    """StarGAN v2's metrics/fid.py wrapper, rebuilt from torchvision's modules."""
    pool = torch.nn.MaxPool2d(kernel_size=3, stride=2)
    return [
        torch.nn.Sequential(net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, pool),
        torch.nn.Sequential(net.Conv2d_3b_1x1, net.Conv2d_4a_3x3, pool),
        torch.nn.Sequential(
            net.Mixed_5b,
            net.Mixed_5c,
            net.Mixed_5d,
            net.Mixed_6a,
            net.Mixed_6b,
            net.Mixed_6c,
            net.Mixed_6d,
            net.Mixed_6e,
        ),  # fmt: skip
        torch.nn.Sequential(
            net.Mixed_7a, net.Mixed_7b, net.Mixed_7c, torch.nn.AdaptiveAvgPool2d((1, 1))
        ),
    ]


def test_torchvision_inception_features_are_stargan_v2s_blocks():
    net = weights.build_torchvision_inception(random_init=True, seed=2)
    again = weights.build_torchvision_inception(random_init=True, seed=2)
    for p, q in zip(net.parameters(), again.parameters(), strict=True):
        assert torch.equal(p, q)
    assert net.transform_input is False and net.AuxLogits is None
    extractor = ImageNetInceptionFeatures(net, torch.device("cpu"))
    x = torch.rand(2, 1, SIZE, SIZE)
    feats = extractor(x)
    assert feats.shape == (2, 2048) and feats.std() > 0.1
    with torch.no_grad():
        h = extractor.prepare(x)
        outs = []
        for block in stargan_v2_blocks(net):
            h = block(h)
            outs.append(h)
    np.testing.assert_allclose(feats, outs[-1].flatten(1).double().numpy(), rtol=1e-4, atol=1e-5)
    for dims, out in zip((64, 192, 768), outs[:3], strict=True):  # earlier blocks, space-averaged
        got = ImageNetInceptionFeatures(net, torch.device("cpu"), dims)(x)
        np.testing.assert_allclose(got, out.mean(dim=(2, 3)).double().numpy(), rtol=1e-4, atol=1e-5)


def test_torchvision_inception_file_is_found_in_the_hub_cache(empty_torch_home):
    folder = empty_torch_home / "hub" / "checkpoints"
    with pytest.raises(weights.WeightsMissing) as err:
        weights.build_torchvision_inception()
    assert weights.TV_INCEPTION_FILE == "inception_v3_google-0cc3c7bd.pth"
    assert weights.TV_INCEPTION_FILE in str(err.value) and str(folder) in str(err.value)
    folder.mkdir(parents=True)
    torch.manual_seed(4)  # a full torchvision checkpoint, auxiliary head and fc included
    saved = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=True)
    torch.save(saved.state_dict(), folder / weights.TV_INCEPTION_FILE)
    net = weights.build_torchvision_inception()
    assert torch.equal(net.Conv2d_1a_3x3.conv.weight, saved.Conv2d_1a_3x3.conv.weight)
    assert torch.equal(net.Mixed_7c.branch_pool.conv.weight, saved.Mixed_7c.branch_pool.conv.weight)
    assert torch.equal(
        net.Mixed_7c.branch_pool.bn.running_var, saved.Mixed_7c.branch_pool.bn.running_var
    )
    assert isinstance(net.fc, torch.nn.Identity) and net.transform_input is False


def test_network_names_per_metric():
    full = GanMetricsConfig(fid_dims=2048, cxr_timestep=3)
    assert [network_of(m, full) for m in ("fid", "fid_stargan_v2", "fid_cxr", "lpips")] == [
        PYTORCH_FID_NETWORK,
        STARGAN_V2_NETWORK,
        "cxrgen noise-aware classifier (penultimate features, t=3)",
        LPIPS_NETWORK,
    ]
    small = GanMetricsConfig(fid_dims=768)
    assert network_of("fid", small) == "pytorch-fid InceptionV3 (TF FID weights, 768-d block)"
    assert network_of("fid_stargan_v2", small) != STARGAN_V2_NETWORK
    assert "768-d" in network_of("fid_stargan_v2", small)


def results_table(value_of) -> pd.DataFrame:
    """Every metric in every protocol, per-target means and tasks, latent and reference."""
    rows = []
    for metric, network in (
        ("fid", PYTORCH_FID_NETWORK),
        ("fid_stargan_v2", STARGAN_V2_NETWORK),
        ("fid_stargan_v2", "torchvision inception_v3 (ImageNet, 64-d block: not the protocol)"),
        ("fid_cxr", "cxrgen noise-aware classifier (penultimate features, t=0)"),
        ("lpips", LPIPS_NETWORK),
    ):
        for mode in ("latent", "reference"):
            for source in (*DOMAINS3, "mean"):
                for target in (*DOMAINS3, "mean"):
                    if source != target:
                        v = value_of(metric, network, mode, source, target)
                        rows.append((metric, network, "stargan", mode, source, target, v, 4, "ok"))
        if metric != "lpips":
            for target in (*DOMAINS3, "all"):
                v = value_of(metric, network, "sample", "-", target)
                rows.append((metric, network, "dcgan", "sample", "-", target, v, 4, "ok"))
    return pd.DataFrame(rows, columns=COLUMNS)


def test_paper_values_only_beside_rows_of_the_same_protocol():
    codes = {}
    table = results_table(lambda *key: codes.setdefault(key, float(len(codes))))
    matched = paper_comparison(table)
    assert len(matched) == 7  # 3 targets x (FID, LPIPS) + the DCGAN baseline
    assert set(zip(matched["metric"], matched["network"], strict=True)) == {
        ("fid_stargan_v2", STARGAN_V2_NETWORK), ("lpips", LPIPS_NETWORK)
    }  # fmt: skip
    stargan = matched[matched["model"] == "stargan"]
    assert set(stargan["mode"]) == {"latent"} and set(stargan["source"]) == {"mean"}
    for row in matched.itertuples():
        # the row's own value came along (not another row's)
        assert row.value == codes[(row.metric, row.network, row.mode, row.source, row.target)]
        if row.model == "stargan":
            assert row.paper == PAPER_PER_DOMAIN[row.metric][row.target]
        else:
            assert (row.mode, row.target, row.paper) == ("sample", "all", 153.014)
    fid = matched[(matched["metric"] == "fid_stargan_v2") & (matched["model"] == "stargan")]
    assert dict(zip(fid["target"], fid["paper"], strict=True)) == {
        "Normal": 55.796, "COVID-19": 62.599, "Non-COVID": 81.230
    }  # fmt: skip
    # the figure's paper bars: beside the StarGAN v2 protocol FID and LPIPS, never pytorch-fid's
    targets = list(DOMAINS3)
    for metric in ("fid", "fid_cxr"):
        cats, cells = _paper_cells(matched, metric, targets)
        assert not any(cells)
    cats, cells = _paper_cells(matched, "fid_stargan_v2", targets)
    assert cats[:4] == [*targets, "DCGAN (all)"] and "GAN" in cats
    assert [c[0] for c in cells[:4]] == [PAPER_PER_DOMAIN["fid_stargan_v2"][t] for t in targets] + [
        153.014
    ]
    only_small = table[table["network"] != STARGAN_V2_NETWORK]
    assert set(paper_comparison(only_small)["metric"]) == {"lpips"}


def test_missing_weights_name_the_file_and_folder(empty_torch_home):
    folder = empty_torch_home / "hub" / "checkpoints"
    with pytest.raises(weights.WeightsMissing) as err:
        weights.build_inception()
    assert "pt_inception-2015-12-05-6726825d.pth" in str(err.value)
    assert str(folder) in str(err.value) and "metrics_optional" in str(err.value)
    with pytest.raises(weights.WeightsMissing, match="alexnet-owt-7be5be79.pth") as err:
        weights.build_lpips(extra_dirs=[empty_torch_home / "mine"])
    assert str(folder) in str(err.value) and str(empty_torch_home / "mine") in str(err.value)
    assert weights.lpips_linear_weights().is_file()  # shipped inside the lpips package


def test_located_weight_files_are_loaded_without_download(empty_torch_home, monkeypatch):
    folder = empty_torch_home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    inner = []
    original = pf._inception_v3
    monkeypatch.setattr(
        pf, "_inception_v3", lambda *a, **k: inner.append(original(*a, **k)) or inner[-1]
    )
    weights.build_inception(random_init=True, seed=5)
    monkeypatch.setattr(pf, "_inception_v3", original)
    torch.save(inner[-1].state_dict(), folder / weights.INCEPTION_FILE)
    net = weights.build_inception(dims=64)
    assert torch.equal(net.blocks[0][0].conv.weight, inner[-1].Conv2d_1a_3x3.conv.weight)
    alexnet = torchvision.models.alexnet(weights=None)
    torch.save(alexnet.state_dict(), folder / weights.ALEXNET_FILE)
    lp = weights.build_lpips()
    assert torch.equal(lp.net.slice1[0].weight, alexnet.features[0].weight)
    assert torch.equal(getattr(lp.net.slice5, "10").weight, alexnet.features[10].weight)
    lin = torch.load(weights.lpips_linear_weights(), map_location="cpu", weights_only=True)
    assert torch.equal(lp.lin0.model[-1].weight, lin["lin0.model.1.weight"])


def test_classifier_features_are_the_head_inputs():
    torch.manual_seed(0)
    clf = NoiseAwareClassifier(
        3,
        8,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        attention_head_dim=4,
        mid_attention=False,
    ).eval()
    extractor = ClassifierFeatures(clf, torch.device("cpu"))
    x = torch.rand(4, 1, SIZE, SIZE)  # resized to the classifier's 8 x 8
    feats = extractor(x)
    assert feats.shape == (4, 16)
    small = torch.nn.functional.interpolate(x, size=(8, 8), mode="bilinear", align_corners=False)
    logits = clf(small * 2 - 1, torch.zeros(4, dtype=torch.long))
    recon = torch.from_numpy(feats).float() @ clf.head.weight.T + clf.head.bias
    torch.testing.assert_close(recon, logits, rtol=1e-4, atol=1e-5)


def write_generated(folder, kind, classes, n_src=2, outs=3, seed=0):
    """A hand-made generate_synthetic folder (no GAN training needed)."""
    rng = np.random.default_rng(seed)
    rows = []
    if kind == "stargan":
        for s, src in enumerate(classes):
            for i in range(n_src):
                for t, trg in enumerate(classes):
                    if t != s:
                        for k in range(outs):
                            rows.append(("latent", 100 * s + i, src, trg, t, k))
    else:
        for t, trg in enumerate(classes):
            for k in range(outs):
                rows.append(("sample", -1, "", trg, t, k))
    index = pd.DataFrame(
        rows,
        columns=["mode", "source_row", "source_domain", "target_domain", "target_label", "output"],
    )
    index.insert(0, "row", np.arange(len(index)))
    index.insert(1, "model", kind)
    folder.mkdir(parents=True)
    images = rng.integers(0, 256, (len(index), SIZE, SIZE)).astype(np.uint8)
    np.save(folder / "images.npy", images)
    index.to_parquet(folder / "index.parquet")
    write_classes(folder / "classes.json", classes)
    return folder


@pytest.fixture(scope="module")
def eval_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    store = make_domain_store(root, DOMAINS3, n_train=3, n_valid=1, size=SIZE)
    generated = {
        "stargan": write_generated(root / "sg", "stargan", DOMAINS3),
        "dcgan": write_generated(root / "dc", "dcgan", DOMAINS3, outs=4),
    }
    torch.manual_seed(0)
    clf = NoiseAwareClassifier(
        3,
        SIZE,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        attention_head_dim=4,
        mid_attention=False,
    )
    save_classifier(clf, root / "classifier")
    return root, store, generated


def test_evaluate_gan_end_to_end_with_random_weights(eval_inputs, tmp_path):
    root, store, generated = eval_inputs
    cfg = GanMetricsConfig(random_weights=True, fid_dims=64, device="cpu")
    table = evaluate_gan(generated, *store, tmp_path, cfg, root / "classifier", progress=False)
    assert list(table.columns) == [
        "metric",
        "network",
        "model",
        "mode",
        "source",
        "target",
        "value",
        "n",
        "status",
    ]
    assert set(table["metric"]) == {"fid", "fid_stargan_v2", "fid_cxr", "lpips"}
    assert set(table.loc[table["metric"] != "fid_cxr", "status"]) == {"random_weights"}
    assert set(table.loc[table["metric"] == "fid_cxr", "status"]) == {"ok"}
    assert np.isfinite(table["value"]).all()
    networks = table.groupby("metric")["network"].unique().map(list).to_dict()
    assert networks == {
        "fid": ["pytorch-fid InceptionV3 (TF FID weights, 64-d block)"],
        "fid_stargan_v2": [
            "torchvision inception_v3 (ImageNet, 64-d block: not the StarGAN v2 protocol)"
        ],
        "fid_cxr": ["cxrgen noise-aware classifier (penultimate features, t=0)"],
        "lpips": ["lpips v0.1 alexnet"],
    }
    per_target = table.query("model == 'stargan' and source == 'mean' and target != 'mean'")
    assert sorted(per_target.groupby("metric").size().items()) == [
        ("fid", 3), ("fid_cxr", 3), ("fid_stargan_v2", 3), ("lpips", 3)
    ]  # fmt: skip
    v2 = table.query("metric == 'fid_stargan_v2' and model == 'stargan' and mode == 'latent'")
    for target in DOMAINS3:  # per target: the mean over the two other source domains
        tasks = v2.query("target == @target and source in @DOMAINS3")
        assert sorted(tasks["source"]) == sorted(set(DOMAINS3) - {target})
        mean = v2.query("target == @target and source == 'mean'")
        assert mean["value"].item() == pytest.approx(tasks["value"].mean())
        assert mean["n"].item() == tasks["n"].sum() == 12
    # 64-d features: not the paper's protocol, so nothing of this run stands beside Table 1's FID
    assert set(paper_comparison(table)["metric"]) == {"lpips"}
    lp = table.query("metric == 'lpips' and source == 'Normal'")
    assert set(lp["target"]) == {"COVID-19", "Non-COVID"} and (lp["n"] == 2).all()
    assert table.query("metric == 'lpips' and model == 'dcgan'").empty
    dc = table.query("metric == 'fid' and model == 'dcgan'")
    assert (
        sorted(dc["target"]) == sorted([*DOMAINS3, "all"])
        and dc.query("target == 'all'")["n"].item() == 12
    )
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "gan_metrics.parquet"), table)
    assert (tmp_path / "gan_metrics.png").stat().st_size > 10_000
    prov = io.read_json(tmp_path / "provenance.json")
    assert prov["stage"] == "evaluate_gan" and prov["real_counts"] == {d: 3 for d in DOMAINS3}


def test_optional_metrics_become_unavailable_and_nothing_else_changes(
    eval_inputs, tmp_path, empty_torch_home, caplog
):
    root, store, generated = eval_inputs
    cfg = GanMetricsConfig(metrics_optional=True, device="cpu")
    with caplog.at_level(logging.WARNING, logger="cxrgen.metrics.gan_metrics"):
        table = evaluate_gan(
            generated, *store, tmp_path / "a", cfg, root / "classifier", progress=False
        )
    missing = table[table["metric"].isin(["fid", "fid_stargan_v2", "lpips"])]
    assert set(missing["status"]) == {"unavailable"} and missing["value"].isna().all()
    assert set(missing["metric"]) == {"fid", "fid_stargan_v2", "lpips"}
    warned = {r.getMessage().split(" ")[0]: r.getMessage() for r in caplog.records}
    assert weights.INCEPTION_FILE in warned["fid"]
    assert "inception_v3_google-0cc3c7bd.pth" in warned["fid_stargan_v2"]
    assert weights.ALEXNET_FILE in warned["lpips"]
    v2 = missing.query("metric == 'fid_stargan_v2'")
    assert set(v2["network"]) == {STARGAN_V2_NETWORK}
    # the paper's values stand beside the protocol rows even when those are unavailable
    matched = paper_comparison(table)
    assert set(matched["metric"]) == {"fid_stargan_v2", "lpips"}
    cxr = table[table["metric"] == "fid_cxr"]
    assert set(cxr["status"]) == {"ok"} and np.isfinite(cxr["value"]).all()
    only_cxr = evaluate_gan(
        generated,
        *store,
        tmp_path / "b",
        GanMetricsConfig(metrics=("fid_cxr",), device="cpu"),
        root / "classifier",
        progress=False,
    )
    pd.testing.assert_frame_equal(cxr.reset_index(drop=True), only_cxr)
    # same rows (tasks, means, n) as when the weights are there
    keys = ["metric", "model", "mode", "source", "target"]
    assert len(missing.query("metric == 'fid'")) == len(cxr)
    assert (missing.query("metric == 'fid'")[keys[1:]].to_numpy() == cxr[keys[1:]].to_numpy()).all()
    assert (tmp_path / "a" / "gan_metrics.png").exists()
    with pytest.raises(weights.WeightsMissing, match="pt_inception"):
        evaluate_gan(
            generated, *store, tmp_path / "c", GanMetricsConfig(device="cpu"), progress=False
        )
    strict = GanMetricsConfig(metrics=("fid_stargan_v2",), device="cpu")
    with pytest.raises(weights.WeightsMissing, match="inception_v3_google-0cc3c7bd.pth"):
        evaluate_gan(generated, *store, tmp_path / "d", strict, progress=False)


def test_paper_domain_names():
    assert [paper_domain(n) for n in ("Normal", "COVID-19", "Non-COVID", "Non-COVID19")] == [
        "Normal", "COVID-19", "Non-COVID", "Non-COVID"
    ]  # fmt: skip
    assert paper_domain("Lung Opacity") is None
