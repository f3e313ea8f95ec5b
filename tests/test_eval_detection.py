"""Detection by counterfactual change: AUROC/AP with bootstrap CIs, references, Table 2."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from cxrgen.classifier.model import NoiseAwareClassifier
from cxrgen.errors import ConfigError, DataError
from cxrgen.evaluation.detection import (
    COLUMNS,
    NAKAO_AUROC,
    NAKAO_METHOD,
    best_setting,
    bootstrap_ci,
    classifier_probabilities,
    detection_table,
    reference_rows,
    table2,
)

POS, NEG = "Lung Opacity", "Normal"


def scores_table(method, scale, labels, **statistics):
    """A scores.parquet-like table: one row per image, class from the 0/1 label."""
    labels = np.asarray(labels)
    return pd.DataFrame(
        {
            "method": method,
            "scale": scale,
            "image_id": [f"img{i}" for i in range(len(labels))],
            "class_name": np.where(labels == 1, POS, NEG),
            "label": labels,
            **statistics,
        }
    )


def shifted(n, shift, seed):
    """Labels half 0, half 1, scores N(shift * label, 1)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], n // 2)
    return labels, rng.normal(size=n) + shift * labels


# --- bootstrap_ci -------------------------------------------------------------------------


def test_perfect_and_reversed_separation_are_exact():
    labels = np.repeat([0, 1], 10)
    scores = np.arange(20, dtype=float)
    np.testing.assert_allclose(
        bootstrap_ci(labels, scores, roc_auc_score, n_boot=100), 1.0, atol=1e-12
    )
    ap = bootstrap_ci(labels, scores, average_precision_score, n_boot=100)
    np.testing.assert_allclose(ap, 1.0, atol=1e-12)
    np.testing.assert_allclose(
        bootstrap_ci(labels, -scores, roc_auc_score, n_boot=100), 0.0, atol=1e-12
    )


def test_resamples_keep_both_class_counts():
    # the metric returns the number of positives of the resample: constant if stratified
    labels = np.r_[np.zeros(30), np.ones(3)].astype(int)
    scores = np.linspace(0, 1, 33)
    seen = []

    def n_positive(y, s):
        seen.append((int(y.sum()), len(y)))
        return float(y.sum())

    assert bootstrap_ci(labels, scores, n_positive, n_boot=300) == (3.0, 3.0, 3.0)
    assert set(seen) == {(3, 33)} and len(seen) == 301
    # one positive of 31: an unstratified resample lacks it ~37% of the time (AUROC would fail)
    one = np.r_[np.zeros(30), 1].astype(int)
    value, low, high = bootstrap_ci(one, np.linspace(0, 1, 31), roc_auc_score, n_boot=300)
    np.testing.assert_allclose([value, low, high], 1.0, atol=1e-12)  # sklearn's rounding


def test_ci_contains_value_and_narrows_with_more_data():
    widths = []
    for n in (20, 400):
        labels, scores = shifted(n, 1.0, seed=1)
        value, low, high = bootstrap_ci(labels, scores, roc_auc_score, n_boot=150, seed=3)
        assert value == roc_auc_score(labels, scores)
        assert 0 <= low < value < high <= 1
        widths.append(high - low)
    assert widths[1] < widths[0] / 2  # width ~ 1 / sqrt(n): 20x the data, ~4.5x narrower
    labels, scores = shifted(400, 1.0, seed=1)
    _, low95, high95 = bootstrap_ci(labels, scores, roc_auc_score, n_boot=150, seed=3)
    _, low50, high50 = bootstrap_ci(labels, scores, roc_auc_score, n_boot=150, seed=3, alpha=0.5)
    assert low95 < low50 < high50 < high95


def test_bootstrap_rejects_bad_input():
    with pytest.raises(DataError, match="both classes"):
        bootstrap_ci(np.ones(5, int), np.arange(5.0), roc_auc_score)
    with pytest.raises(ConfigError):
        bootstrap_ci(np.array([0, 2]), np.arange(2.0), roc_auc_score)
    with pytest.raises(ConfigError):
        bootstrap_ci(np.array([0, 1]), np.arange(3.0), roc_auc_score)


# --- detection_table ----------------------------------------------------------------------


def test_hand_computed_example_in_table():
    # AUROC: pairs (pos > neg) 0.35>0.1, 0.8>0.1, 0.8>0.4 of 4 = 0.75;
    # AP: ranked 0.8(+) 0.4(-) 0.35(+) 0.1(-): 0.5 * 1 + 0.5 * 2/3 = 5/6
    table = scores_table("cfg", 3.0, [0, 0, 1, 1], sum_abs=[0.1, 0.4, 0.35, 0.8])
    det = detection_table(table, ["sum_abs"], n_boot=100)
    assert list(det.columns) == [*COLUMNS, "split"]
    assert len(det) == 2
    row = det.set_index("metric")
    assert row.loc["auroc", "value"] == pytest.approx(0.75, abs=1e-12)
    assert row.loc["ap", "value"] == pytest.approx(5 / 6, abs=1e-12)
    assert (det["n_pos"] == 2).all() and (det["n_neg"] == 2).all()
    assert (det["source"] == "measured").all()
    assert (det["ci_low"] <= det["value"]).all() and (det["value"] <= det["ci_high"]).all()
    assert det[["method", "scale", "statistic"]].drop_duplicates().values.tolist() == [
        ["cfg", 3.0, "sum_abs"]
    ]


def two_methods():
    labels, good = shifted(40, 2.0, seed=5)
    _, weak = shifted(40, 0.3, seed=6)
    cfg = scores_table("cfg", 3.0, labels, sum_abs=good, guided_sum_abs=weak)
    stargan = scores_table("stargan", 0.0, labels, sum_abs=weak, guided_sum_abs=np.nan)
    return pd.concat([cfg, stargan], ignore_index=True)


def test_nan_statistics_skipped_and_other_classes_ignored():
    scores = two_methods()
    det = detection_table(scores, ["sum_abs", "guided_sum_abs"], n_boot=30)
    settings = set(map(tuple, det[["method", "statistic"]].drop_duplicates().values))
    assert settings == {("cfg", "sum_abs"), ("cfg", "guided_sum_abs"), ("stargan", "sum_abs")}
    assert len(det) == 6
    expected = roc_auc_score(
        scores.label[scores.method == "cfg"], scores.sum_abs[scores.method == "cfg"]
    )
    got = det.query("method == 'cfg' and statistic == 'sum_abs' and metric == 'auroc'")
    assert got["value"].item() == expected
    # rows of another class, with scores that would change every value, are ignored
    other = scores_table("cfg", 3.0, np.ones(10, int), sum_abs=-100.0, guided_sum_abs=-100.0)
    other = other.assign(class_name="COVID", image_id=[f"x{i}" for i in range(10)])
    with_other = detection_table(
        pd.concat([scores, other], ignore_index=True), ["sum_abs", "guided_sum_abs"], n_boot=30
    )
    pd.testing.assert_frame_equal(with_other, det)


def test_same_seed_same_table_other_seed_other_ci():
    scores = two_methods()
    a = detection_table(scores, ["sum_abs", "guided_sum_abs"], n_boot=30, seed=4)
    b = detection_table(scores, ["sum_abs", "guided_sum_abs"], n_boot=30, seed=4)
    c = detection_table(scores, ["sum_abs", "guided_sum_abs"], n_boot=30, seed=5)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_series_equal(a["value"], c["value"])
    assert not np.allclose(a["ci_low"], c["ci_low"])
    # row order of the input does not matter
    shuffled = scores.sample(frac=1.0, random_state=0)
    pd.testing.assert_frame_equal(
        detection_table(shuffled, ["sum_abs", "guided_sum_abs"], n_boot=30, seed=4), a
    )


def test_detection_table_errors():
    scores = two_methods()
    with pytest.raises(DataError, match="lacks columns"):
        detection_table(scores, ["nope"], n_boot=10)
    with pytest.raises(DataError, match="no rows"):
        detection_table(scores, ["sum_abs"], positive_class="A", negative_class="B", n_boot=10)
    with pytest.raises(DataError, match="twice"):
        detection_table(pd.concat([scores, scores]), ["sum_abs"], n_boot=10)
    only_normal = scores[scores.class_name == NEG]
    with pytest.raises(DataError, match="both classes"):
        detection_table(only_normal, ["sum_abs"], n_boot=10)


# --- reference rows and best setting ------------------------------------------------------


def test_reference_rows():
    prob = pd.DataFrame(
        {
            "image_id": [f"i{k}" for k in range(7)],
            "class_name": [NEG, NEG, NEG, POS, POS, POS, "Other"],
            "p_positive": [0.1, 0.2, 0.6, 0.5, 0.7, 0.9, 0.0],
        }
    )
    ref = reference_rows(prob, n_boot=100)
    assert list(ref.columns) == [*COLUMNS, "split"]
    clf = ref[ref.method == "classifier"].set_index("metric")
    assert clf.loc["auroc", "value"] == pytest.approx(8 / 9)  # 8 of 9 pairs ordered
    assert (clf["statistic"] == "p_opacity_t0").all() and (clf["source"] == "measured").all()
    assert (clf["n_pos"] == 3).all() and (clf["n_neg"] == 3).all()
    assert clf["scale"].isna().all()
    nakao = ref[ref.method == NAKAO_METHOD]
    assert len(nakao) == 1
    row = nakao.iloc[0]
    assert (row.statistic, row.metric, row.value) == ("published", "auroc", 0.838)
    assert NAKAO_AUROC == 0.838
    assert np.isnan([row.ci_low, row.ci_high, row.n_pos, row.n_neg, row.scale]).all()
    assert row.source == "published, RSNA Lung Opacity vs Normal"
    only = reference_rows(None)
    assert only["method"].tolist() == [NAKAO_METHOD]
    with pytest.raises(DataError, match="lack columns"):
        reference_rows(prob.drop(columns="p_positive"))


def test_best_setting_ties_and_exclusions():
    rows = [
        ("stargan", 0.0, "sum_abs", "auroc", 0.8, "measured"),
        ("cfg", 5.0, "top_mean_abs", "auroc", 0.8, "measured"),
        ("cfg", 3.0, "sum_abs", "auroc", 0.8, "measured"),
        ("cfg", 3.0, "max_abs", "auroc", 0.8, "measured"),
        ("cg", 1.0, "sum_abs", "auroc", 0.7, "measured"),
        ("cg", 1.0, "sum_abs", "ap", 0.99, "measured"),
        ("classifier", np.nan, "p_opacity_t0", "auroc", 0.95, "measured"),
        (NAKAO_METHOD, np.nan, "published", "auroc", 0.9, "published, RSNA"),
        ("cfg", 7.0, "lung_sum_abs", "auroc", np.nan, "measured"),
    ]
    det = pd.DataFrame(rows, columns=["method", "scale", "statistic", "metric", "value", "source"])
    best = best_setting(det)
    assert (best.method, best.scale, best.statistic) == ("cfg", 3.0, "max_abs")
    # any order of the rows gives the same choice
    for seed in range(3):
        again = best_setting(det.sample(frac=1.0, random_state=seed))
        assert (again.method, again.scale, again.statistic) == ("cfg", 3.0, "max_abs")
    ap = best_setting(det, metric="ap")
    assert (ap.method, ap.value) == ("cg", 0.99)
    with pytest.raises(DataError):
        best_setting(det, metric="f1")


# --- Table 2 ------------------------------------------------------------------------------


def test_table2_means_and_paper_rows():
    scores = pd.concat(
        [
            scores_table("cfg", 3.0, [0, 0, 1, 1, 1], sum_abs=[1.0, 3.0, 10.0, 20.0, 60.0]),
            scores_table("cg", 1.0, [0, 1], sum_abs=[5.0, 7.0]),
        ],
        ignore_index=True,
    )
    t = table2(scores.assign(split="test"), grid=(10, 10))
    measured = t[t.source == "measured"].set_index(["method", "class_name"])
    assert measured.loc[("cfg", NEG), "mean"] == 2.0
    assert measured.loc[("cfg", NEG), "std"] == pytest.approx(np.sqrt(2.0))
    assert measured.loc[("cfg", POS), "mean"] == 30.0
    assert measured.loc[("cfg", POS), "std"] == pytest.approx(np.std([10, 20, 60], ddof=1))
    assert measured.loc[("cfg", POS), "n"] == 3 and measured.loc[("cg", NEG), "n"] == 1
    assert np.isnan(measured.loc[("cg", NEG), "std"])
    assert measured.loc[("cfg", POS), "mean_per_pixel"] == pytest.approx(0.3)
    assert (measured["split"] == "test").all() and len(measured) == 4
    assert (measured["units"] == "sum of |difference|, intensities in [0, 1], 10x10 grid").all()
    paper = t[t.method == "paper"].set_index("class_name")
    assert paper.loc[NEG, "mean"] == 2721.64 and paper.loc[POS, "mean"] == 3684.64
    assert (paper["source"] == "published").all() and (paper["split"] == "valid").all()
    assert paper["scale"].isna().all()
    # the paper states no image size or intensity range: no per-pixel value is made up for it
    assert paper["mean_per_pixel"].isna().all()
    assert paper["units"].str.contains("not stated").all()
    without = table2(scores)
    assert without["mean_per_pixel"].isna().all() and (without.split[:4] == "").all()
    pd.testing.assert_series_equal(without["mean"], t["mean"])
    # one row group per split: the same images split in two give each half's own mean
    halves = scores.assign(split=["calibration", "test"] * 3 + ["test"])
    per = table2(halves).query("source == 'measured' and method == 'cfg' and class_name == @NEG")
    assert per.set_index("split")["mean"].to_dict() == {"calibration": 1.0, "test": 3.0}
    with pytest.raises(DataError, match="non-finite"):
        table2(scores.assign(sum_abs=np.nan))


# --- classifier probabilities -------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_classifier(one_torch_thread):
    torch.manual_seed(0)
    return NoiseAwareClassifier(
        num_classes=2,
        sample_size=16,
        block_out_channels=(8, 16),
        norm_num_groups=8,
        attention_head_dim=8,
        num_train_timesteps=100,
    )


def test_classifier_probabilities(tiny_classifier):
    model = tiny_classifier.train()  # the function evaluates in eval mode and restores this
    images = np.random.default_rng(0).random((7, 16, 16), dtype=np.float32)
    one = classifier_probabilities(model, images, batch_size=1)
    five = classifier_probabilities(model, images, batch_size=5)
    assert model.training
    assert one.dtype == np.float64 and one.shape == (7,)
    np.testing.assert_allclose(one, five, atol=1e-6)
    with torch.no_grad():
        x = torch.from_numpy(images).unsqueeze(1) * 2 - 1
        direct = torch.softmax(model.eval()(x, 0), dim=-1).double().numpy()
    model.train()
    np.testing.assert_allclose(five, direct[:, 1], atol=1e-6)
    np.testing.assert_allclose(
        classifier_probabilities(model, images, positive_label=0), direct[:, 0], atol=1e-6
    )
    assert not np.allclose(direct[:, 1], direct[0, 1])  # the images are told apart
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        classifier_probabilities(model, images * 255)
    with pytest.raises(ConfigError):
        classifier_probabilities(model, images, positive_label=2)
    with pytest.raises(DataError, match="shape"):
        classifier_probabilities(model, images[0])
