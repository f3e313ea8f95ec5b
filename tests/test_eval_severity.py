"""Severity features and regression, radial spectra and band energies against constructed truth."""

import numpy as np
import pandas as pd
import pytest

from cxrgen.errors import ConfigError, DataError
from cxrgen.evaluation.severity import FEATURES, _splitter, lung_features, severity_cv
from cxrgen.evaluation.spectra import band_energy_table, radial_power_spectrum
from cxrgen.metrics.fourier import highpass, lowpass

SIZE = 16


def sided_masks(n: int) -> np.ndarray:
    """Right lung (1) in rows 2-11 x columns 1-5, left lung (2) in rows 2-11 x columns 10-14."""
    masks = np.zeros((n, SIZE, SIZE), dtype=np.uint8)
    masks[:, 2:12, 1:6] = 1
    masks[:, 2:12, 10:15] = 2
    return masks


def test_lung_features_inside_masks_exact():
    diff = np.zeros((3, SIZE, SIZE), dtype=np.float32)
    diff[0, 3, 2] = 0.5  # right lung
    diff[0, 4, 3] = -0.25  # right lung, added opacity: not in sum_removed
    diff[0, 5, 11] = 0.75  # left lung
    diff[0, 0, 0] = 0.9  # outside both lungs: ignored
    diff[1, 2:12, 10:15] = 0.1  # the whole left lung
    masks = sided_masks(3)
    table = lung_features(diff, np.abs(diff), masks, top_fraction=0.04)
    assert list(table["row"]) == [0, 1, 2]
    assert set(table["region"]) == {"lung mask"}
    assert list(table.columns[2:]) == [f"{s}_{f}" for s in ("right", "left") for f in FEATURES]
    r0 = table.iloc[0]
    np.testing.assert_allclose(r0["right_sum_abs"], 0.75)
    np.testing.assert_allclose(r0["right_mean_abs"], 0.75 / 50)
    np.testing.assert_allclose(r0["right_top_mean_abs"], 0.75 / 2)  # top 4% of 50 px = 2 px
    np.testing.assert_allclose(r0["right_sum_removed"], 0.5)
    np.testing.assert_allclose(r0["left_sum_abs"], 0.75)
    np.testing.assert_allclose(r0["left_sum_removed"], 0.75)
    r1 = table.iloc[1]
    np.testing.assert_allclose([r1["left_sum_abs"], r1["left_mean_abs"]], [5.0, 0.1], rtol=1e-6)
    np.testing.assert_allclose(r1["left_top_mean_abs"], 0.1, rtol=1e-6)
    assert r1["right_sum_abs"] == 0
    assert (table.iloc[2, 2:] == 0).all()


def test_lung_features_fall_back_to_image_halves():
    rng = np.random.default_rng(0)
    diff = rng.normal(size=(4, SIZE, SIZE)).astype(np.float32)
    masks = sided_masks(4)
    masks[1] = (masks[1] > 0).astype(np.uint8)  # a 0/1 mask: no sides
    for given in (None, masks):
        table = lung_features(diff, np.abs(diff), given)
        halves = table["region"] == "image half"
        expect = [True] * 4 if given is None else [False, True, False, False]
        assert list(halves) == expect
        for i in np.flatnonzero(halves):
            image = np.abs(diff[i]).astype(np.float64)
            # patient's right lung on the image left
            np.testing.assert_allclose(table.loc[i, "right_sum_abs"], image[:, :8].sum(), 1e-5)
            np.testing.assert_allclose(table.loc[i, "left_sum_abs"], image[:, 8:].sum(), 1e-5)
            removed = np.clip(diff[i], 0, None)[:, 8:].sum()
            np.testing.assert_allclose(table.loc[i, "left_sum_removed"], removed, 1e-5)
            np.testing.assert_allclose(table.loc[i, "left_mean_abs"], image[:, 8:].mean(), 1e-5)


def test_lung_features_chunk_independent_and_checked():
    rng = np.random.default_rng(1)
    diff = rng.normal(size=(7, SIZE, SIZE)).astype(np.float32)
    masks = sided_masks(7)
    masks[3] = 0
    whole = lung_features(diff, np.abs(diff), masks, chunk=256)
    pd.testing.assert_frame_equal(whole, lung_features(diff, np.abs(diff), masks, chunk=2))
    assert whole.loc[3, "region"] == "image half"
    with pytest.raises(DataError):
        lung_features(diff, np.abs(diff[:, :8]))
    with pytest.raises(ConfigError):
        lung_features(diff, np.abs(diff), top_fraction=0)


def ralo_setup(n=60, seed=0):
    """Features and RALO targets: the right scores are linear in right_sum_abs, 2 rows/patient."""
    rng = np.random.default_rng(seed)
    features = pd.DataFrame(
        {
            "row": np.arange(n),
            "right_sum_abs": rng.uniform(0, 100, n),
            "left_sum_abs": rng.uniform(0, 100, n),
            "right_noise": rng.normal(size=n),
            "left_noise": rng.normal(size=n),
            "p_positive": rng.uniform(0, 1, n),
        }
    )
    targets = pd.DataFrame(
        {
            "extent_right": features["right_sum_abs"] / 25,  # 0-4, exactly linear
            "extent_left": rng.integers(0, 5, n).astype(float),
            "extent_total": features["right_sum_abs"] / 25 + features["left_sum_abs"] / 25,
        }
    )
    groups = np.repeat(np.arange(n // 2), 2)
    return features, targets, groups


def test_severity_cv_recovers_a_linear_score():
    features, targets, groups = ralo_setup()
    targets.loc[5, "extent_right"] = np.nan
    table, preds = severity_cv(features, targets, groups, {"map": ["sum_abs"]})
    value = table.set_index(["feature_set", "score", "metric"])["value"]
    assert value["map", "extent_right", "spearman"] == pytest.approx(1.0)
    assert value["map", "extent_right", "mae"] < 0.02
    assert value["map", "extent_total", "spearman"] > 0.999  # both lungs' features
    assert value["map", "extent_total", "mae"] < 0.05
    # the right lung's features say nothing about the left lung's (random) score
    assert abs(value["map", "extent_left", "spearman"]) < 0.5
    n = table.set_index(["score", "metric"])["n"]
    assert n["extent_right", "mae"] == 59 and n["extent_left", "mae"] == 60
    right = preds[(preds.score == "extent_right") & (preds.feature_set == "map")]
    assert 5 not in set(right["row"]) and len(right) == 59
    assert right["predicted"].between(0, 4).all()
    np.testing.assert_allclose(right["predicted"], right["true"], atol=0.05)


def test_severity_cv_noise_features_and_baseline():
    rhos = []
    for seed in range(4):
        features, targets, groups = ralo_setup(seed=seed)
        sets = {"noise": ["noise"], "classifier probability": ["p_positive"], "map": ["sum_abs"]}
        table, _ = severity_cv(features, targets, groups, sets, seed=seed)
        rho = table[(table.metric == "spearman") & (table.score == "extent_right")]
        rho = rho.set_index("feature_set")["value"]
        assert rho["map"] == pytest.approx(1.0)
        assert abs(rho["noise"]) < 0.5 and abs(rho["classifier probability"]) < 0.5
        rhos += [rho["noise"], rho["classifier probability"]]
    # no spurious skill; held-out fold means make it slightly negative, never positive
    assert -0.4 < np.mean(rhos) < 0.1
    with pytest.raises(DataError, match="neither"):
        severity_cv(features, targets, groups, {"x": ["missing"]})


def test_folds_never_split_a_patient():
    groups = np.repeat(np.arange(12), 3)
    for n_folds, expect in ((5, 5), (20, 12)):  # fewer patients than folds: one patient out
        split = _splitter(groups, n_folds, seed=0)
        assert split.get_n_splits() == expect
        tested = []
        for train, test in split.split(groups, groups=groups):
            assert not set(groups[train]) & set(groups[test])
            tested.extend(test)
        assert sorted(tested) == list(range(36))
    assert _splitter(np.zeros(10), 5, seed=0).get_n_splits() == 5  # one patient: rows


def test_severity_cv_deterministic_and_seeded():
    features, targets, groups = ralo_setup(seed=3)
    sets = {"noise": ["noise", "sum_abs"]}
    t1, p1 = severity_cv(features, targets, groups, sets, seed=7)
    t2, p2 = severity_cv(features, targets, groups, sets, seed=7)
    pd.testing.assert_frame_equal(t1, t2)
    pd.testing.assert_frame_equal(p1, p2)
    _, p3 = severity_cv(features, targets, groups, {"noise": ["noise"]}, seed=8)
    _, p4 = severity_cv(features, targets, groups, {"noise": ["noise"]}, seed=7)
    assert not np.allclose(p3["predicted"], p4["predicted"])  # the seed shuffles the folds


def test_severity_cv_constant_prediction_gives_nan_rho():
    features, targets, groups = ralo_setup()
    targets["extent_left"] = 2.0  # constant truth: rho undefined
    table, _ = severity_cv(features, targets, groups, {"map": ["sum_abs"]})
    value = table.set_index(["score", "metric"])["value"]
    assert np.isnan(value["extent_left", "spearman"])
    assert value["extent_left", "mae"] == pytest.approx(0.0, abs=1e-9)


def test_radial_spectrum_of_a_sinusoid_peaks_at_its_bin():
    n = 32
    x = np.arange(n)
    images = np.stack(
        [np.tile(np.cos(2 * np.pi * k * x / n), (n, 1)) for k in (3, 5)]  # k cycles per image
    ).astype(np.float32)
    freqs, power = radial_power_spectrum(images, per_image=True)
    assert power.shape == (2, len(freqs)) and freqs[1] == pytest.approx(2 / n)
    assert list(np.nanargmax(power, axis=1)) == [3, 5]
    np.testing.assert_allclose(freqs[[3, 5]], [3 / 16, 5 / 16])  # k/n cycles/px over Nyquist 0.5
    _, mean = radial_power_spectrum(images)
    np.testing.assert_allclose(mean, power.mean(axis=0))
    _, chunked = radial_power_spectrum(images, per_image=True, chunk=1)
    np.testing.assert_allclose(chunked, power)
    freqs8, power8 = radial_power_spectrum(images, n_bins=8)
    assert len(freqs8) == 8 and freqs8[-1] == pytest.approx(np.sqrt(2))
    assert np.isfinite(power8).all()


def test_radial_spectrum_bins_hold_the_total_power():
    rng = np.random.default_rng(2)
    images = rng.normal(size=(3, 24, 24))
    freqs, power = radial_power_spectrum(images, per_image=True)
    fy, fx = np.meshgrid(np.fft.fftfreq(24), np.fft.fftfreq(24), indexing="ij")
    counts = np.bincount(np.floor(np.hypot(fy, fx) / 0.5 / freqs[1] + 0.5).astype(int).ravel())
    np.testing.assert_allclose((power * counts).sum(axis=1), (images**2).mean(axis=(1, 2)))


def band_images(n=6, seed=3):
    rng = np.random.default_rng(seed)
    original = rng.uniform(0, 1, size=(n, SIZE, SIZE)).astype(np.float32)
    counterfactual = np.clip(original - rng.normal(0, 0.1, original.shape), 0, 1)
    return original, counterfactual.astype(np.float32)


def test_band_energies_obey_parseval_and_match_the_filters():
    original, counterfactual = band_images()
    labels = np.array(["Normal", "Lung Opacity"] * 3)
    cutoffs = (0.1, 0.25, 0.5)
    table = band_energy_table(original, counterfactual, cutoffs, labels=labels)
    assert set(table["class_name"]) == {"all", "Normal", "Lung Opacity"}
    assert len(table) == 3 * 3 * 4
    sums = table.groupby(["image_kind", "class_name"])["energy"].sum()
    kinds = dict(
        original=original, counterfactual=counterfactual, difference=original - counterfactual
    )
    for kind, images in kinds.items():
        msq = (images.astype(np.float64) ** 2).mean(axis=(1, 2))
        np.testing.assert_allclose(sums[kind, "all"], msq.mean(), rtol=1e-6)
        np.testing.assert_allclose(sums[kind, "Normal"], msq[labels == "Normal"].mean(), rtol=1e-6)
    # each band is what lowpass/highpass of cxrgen.metrics.fourier keep
    diff = original - counterfactual
    rows = table[(table.image_kind == "difference") & (table.class_name == "all")]
    expect = [
        (lowpass(diff, 0.1) ** 2).mean(),
        ((lowpass(diff, 0.25) - lowpass(diff, 0.1)) ** 2).mean(),
        ((lowpass(diff, 0.5) - lowpass(diff, 0.25)) ** 2).mean(),
        (highpass(diff, 0.5) ** 2).mean(),
    ]
    np.testing.assert_allclose(rows["energy"], expect, rtol=1e-4)
    assert list(rows["band_low"]) == [0, 0.1, 0.25, 0.5]
    assert rows["band_high"].iloc[-1] == np.inf and (rows["n"] == 6).all()


def test_band_energies_chunk_independent_and_checked():
    original, counterfactual = band_images(n=5)
    whole = band_energy_table(original, counterfactual)
    pd.testing.assert_frame_equal(whole, band_energy_table(original, counterfactual, chunk=2))
    assert set(whole["class_name"]) == {"all"}
    with pytest.raises(ConfigError):
        band_energy_table(original, counterfactual, cutoffs=(0.5, 0.25))
    with pytest.raises(DataError):
        band_energy_table(original, counterfactual[:, :8])
    with pytest.raises(DataError):
        band_energy_table(original, counterfactual, labels=["Normal"])


def test_severity_cv_clips_to_the_score_range():
    features, targets, groups = ralo_setup()
    features.loc[0, "right_sum_abs"] = 1000.0  # a linear fit extrapolates to 40 here
    targets.loc[0, "extent_right"] = 4.0
    _, preds = severity_cv(features, targets, groups, {"map": ["sum_abs"]})
    right = preds[preds.score == "extent_right"].set_index("row")
    assert right.loc[0, "predicted"] == 4.0
    total = preds[preds.score == "extent_total"]
    assert total["predicted"].between(0, 8).all() and total["predicted"].max() > 4


def test_rank_table_reads_the_scores_off_one_feature_without_a_fit():
    from cxrgen.evaluation.severity import RANK_FEATURE_SET, rank_table

    rng = np.random.default_rng(5)
    right, left = rng.integers(0, 5, 40).astype(float), rng.integers(0, 5, 40).astype(float)
    features = pd.DataFrame({"right_sum_removed": 3 * right, "left_sum_removed": 3 * left + 0.5})
    targets = pd.DataFrame({"extent_right": right, "extent_left": left,
                            "extent_total": right + left})  # fmt: skip
    targets.loc[0, "extent_total"] = np.nan  # left out of that score only
    table = rank_table(features, targets).set_index("score")
    assert set(table["feature_set"]) == {RANK_FEATURE_SET} and set(table["metric"]) == {"spearman"}
    for score in ("extent_right", "extent_left", "extent_total"):  # monotone: rho exactly 1
        assert table.loc[score, "value"] == pytest.approx(1.0)
    assert table.loc["extent_total", "n"] == 39 and table.loc["extent_right", "n"] == 40
    # a per-image column counts for both lungs; the wrong lung ranks nothing
    probs = pd.DataFrame({"p_positive": right})
    per_image = rank_table(probs, targets, "p_positive", "classifier probability, no fit")
    rho = per_image.set_index("score")["value"]
    assert rho["extent_right"] == pytest.approx(1.0) and abs(rho["extent_left"]) < 0.4


@pytest.mark.parametrize("shape", [(15, 21), (24, 17), (9, 9)])
def test_radial_spectrum_and_bands_on_odd_sides_match_the_full_fft(shape):
    # the stage transforms half the spectrum (real FFT) and weights its columns; a full complex
    # FFT binned the same way is the reference, odd sides included (no Nyquist column)
    rng = np.random.default_rng(4)
    images = rng.normal(size=(3, *shape))
    height, width = shape
    full = np.abs(np.fft.fft2(images)) ** 2 / float(height * width) ** 2
    freqs, power = radial_power_spectrum(images, per_image=True)
    fy, fx = np.meshgrid(np.fft.fftfreq(height), np.fft.fftfreq(width), indexing="ij")
    radius = np.hypot(fy, fx) / 0.5
    index = np.minimum(np.floor(radius / freqs[1] + 0.5).astype(int), len(freqs) - 1).ravel()
    counts = np.bincount(index, minlength=len(freqs))
    expect = np.stack([np.bincount(index, p.ravel(), len(freqs)) for p in full])
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(power, expect / counts)
    counterfactual = images - rng.normal(0, 0.1, images.shape)
    table = band_energy_table(images, counterfactual, (0.3, 0.7))
    rows = table[table.image_kind == "original"]
    bands = np.searchsorted([0.3, 0.7], radius, side="right")
    np.testing.assert_allclose(
        rows["energy"], [full[:, bands == b].sum(1).mean() for b in range(3)]
    )
