"""Patient-level bootstrap: resamples keep patients whole, weighted metrics equal scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from cxrgen.evaluation import bootstrap
from cxrgen.evaluation.detection import bootstrap_ci
from cxrgen.evaluation.localisation import mask_agreement


def test_patient_strata_follow_the_majority_of_a_patients_images():
    patients = np.array(["a", "a", "a", "b", "b", "c"])
    positive = np.array([1, 1, 0, 1, 0, 0], bool)
    # a: 2 of 3 positive; b: a tie goes to positive; c: negative
    assert bootstrap.patient_strata(patients, positive).tolist() == [1, 1, 1, 1, 1, 0]


def test_resamples_draw_whole_patients_within_each_stratum():
    patients = np.repeat([f"p{i}" for i in range(10)], [1, 2, 3, 1, 2, 3, 1, 2, 3, 1])
    strata = np.isin(patients, ["p0", "p1", "p2"]).astype(int)  # 3 patients vs 7
    weights = bootstrap.resample_weights(patients, strata, 200, seed=4)
    assert weights.shape == (200, len(patients))
    for p in np.unique(patients):  # every image of a patient is drawn as often as the others
        cols = weights[:, patients == p]
        assert (cols == cols[:, :1]).all()
    per_patient = {p: weights[:, patients == p][:, 0] for p in np.unique(patients)}
    drawn_small = sum(per_patient[p] for p in ("p0", "p1", "p2"))
    assert (drawn_small == 3).all()  # each resample draws 3 patients of the small stratum
    assert (sum(per_patient.values()) == 10).all()
    # the order of the images does not matter, the seed does
    order = np.random.default_rng(0).permutation(len(patients))
    again = bootstrap.resample_weights(patients[order], strata[order], 200, seed=4)
    np.testing.assert_array_equal(again, weights[:, order])
    assert not np.array_equal(bootstrap.resample_weights(patients, strata, 200, 5), weights)


def test_weighted_metrics_equal_scikit_learn_with_sample_weights():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 60)
    scores = np.round(rng.normal(size=60) + y, 1)  # rounding makes ties
    weights = rng.integers(0, 4, size=(5, 60))
    auroc = bootstrap.weighted_auroc(y, scores, weights)
    ap = bootstrap.weighted_ap(y, scores, weights)
    for b, w in enumerate(weights):
        assert auroc[b] == pytest.approx(roc_auc_score(y, scores, sample_weight=w), abs=1e-12)
        assert ap[b] == pytest.approx(
            average_precision_score(y, scores, sample_weight=w), abs=1e-12
        )
    assert bootstrap.weighted_auroc(y, scores)[0] == pytest.approx(roc_auc_score(y, scores))
    only_positives = (y == 1)[None].astype(int)  # a resample without a negative: undefined
    assert np.isnan(bootstrap.weighted_auroc(y, scores, only_positives)).all()


def test_patient_intervals_are_wider_than_image_intervals_for_repeated_images():
    """Four identical images per patient carry one patient's information: resampling images
    as if independent makes the interval about half as wide as it should be."""
    rng = np.random.default_rng(2)
    y_patient = np.repeat([0, 1], 15)
    score_patient = rng.normal(size=30) + 0.8 * y_patient
    y, scores = np.repeat(y_patient, 4), np.repeat(score_patient, 4)
    patients = np.repeat(np.arange(30), 4)
    value, lo_p, hi_p = bootstrap_ci(y, scores, roc_auc_score, n_boot=400, groups=patients)
    same, lo_i, hi_i = bootstrap_ci(y, scores, roc_auc_score, n_boot=400)
    assert value == same == pytest.approx(roc_auc_score(y_patient, score_patient))
    assert hi_p - lo_p > 1.6 * (hi_i - lo_i), (lo_p, hi_p, lo_i, hi_i)


def test_pooled_pixel_auroc_interval_from_binned_counts():
    """The binned resamples reproduce the exact pooled AUROC for the unit weights, and the
    interval narrows as patients are added."""
    rng = np.random.default_rng(3)

    def maps_and_masks(n):
        masks = np.zeros((n, 16, 16), bool)
        masks[:, 4:10, 3:9] = True
        maps = rng.normal(size=(n, 16, 16)) + 0.7 * masks + rng.normal(size=(n, 1, 1))
        return maps.astype(np.float32), masks

    widths = []
    for n in (10, 80):
        maps, masks = maps_and_masks(n)
        table = mask_agreement(maps, np.arange(n), lambda r, m=masks: m[r], n_boot=300, seed=1)
        row = table.set_index("metric").loc["pixel_auroc_pooled"]
        exact = roc_auc_score(masks.ravel(), maps.ravel())
        assert row["value"] == pytest.approx(exact)
        assert row["ci_low"] < exact < row["ci_high"]
        widths.append(row["ci_high"] - row["ci_low"])
        weights = np.ones((1, n), np.int64)
        edges = np.unique(np.quantile(maps, np.linspace(0, 1, 1025)[1:-1]))
        k = np.searchsorted(edges, maps.reshape(n, -1), side="right")
        pos = np.stack([np.bincount(k[i][masks[i].ravel()], minlength=len(edges) + 1)
                        for i in range(n)])  # fmt: skip
        neg = np.stack([np.bincount(k[i][~masks[i].ravel()], minlength=len(edges) + 1)
                        for i in range(n)])  # fmt: skip
        binned = bootstrap.auroc_from_counts(weights @ pos, weights @ neg)[0]
        assert binned == pytest.approx(exact, abs=2e-3)  # 1,024 bins: ties cost little
    assert widths[1] < 0.6 * widths[0], widths
