"""Localisation vs boxes and phantom ground truth, on constructed arrays with exact answers."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cxrgen.errors import DataError
from cxrgen.evaluation import localisation
from cxrgen.evaluation.ground_truth import ground_truth_table
from cxrgen.evaluation.localisation import box_mask, localisation_table

SIZE = 16
BOXES = [
    [[2.0, 3.0, 4.0, 5.0]],
    [[8.0, 8.0, 6.0, 4.0], [1.5, 0.5, 3.0, 2.0]],
    [[0.0, 10.0, 16.0, 3.0]],
    [[5.0, 5.0, 2.0, 2.0]],
]


def value(table: pd.DataFrame, metric: str, subset: str | None = None) -> float:
    rows = table[table["metric"] == metric]
    if subset is not None:
        rows = rows[rows["subset"] == subset]
    assert len(rows) == 1
    return float(rows["value"].iloc[0])


def masks_of(boxes) -> np.ndarray:
    return np.stack([box_mask(b, (SIZE, SIZE)) for b in boxes])


# --- box_mask ---------------------------------------------------------------------------------


def test_box_mask_integer_box_covers_its_pixels():
    mask = box_mask([[2.0, 3.0, 4.0, 5.0]], (SIZE, SIZE))  # x=2 (column), y=3 (row)
    assert mask.sum() == 20
    rows, cols = np.nonzero(mask)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (3, 7, 2, 5)


@pytest.mark.parametrize(
    "box, count, first",
    [
        ([1.5, 1.5, 2.0, 2.0], 4, (1, 1)),  # centres 1.5 and 2.5 in [1.5, 3.5): skimage starts at 2
        ([1.6, 1.6, 2.0, 2.0], 4, (2, 2)),  # [1.6, 3.6) holds centres 2.5 and 3.5
        ([0.2, 0.2, 0.5, 0.5], 1, (0, 0)),  # [0.2, 0.7) holds centre 0.5
        ([0.6, 0.6, 0.8, 0.8], 0, None),  # [0.6, 1.4) holds no centre
        ([14.0, 14.0, 10.0, 10.0], 4, (14, 14)),  # clipped at the image edge
        ([-2.0, -2.0, 4.0, 4.0], 4, (0, 0)),
        ([3.0, 2.0, 0.0, 5.0], 0, None),
    ],
)
def test_box_mask_fractional_boxes_by_pixel_centres(box, count, first):
    mask = box_mask([box], (SIZE, SIZE))
    assert mask.sum() == count
    if first is not None:
        rows, cols = np.nonzero(mask)
        assert (rows.min(), cols.min()) == first


def test_box_mask_union_of_overlapping_boxes_and_empty_list():
    mask = box_mask([[0.0, 0.0, 4.0, 4.0], [2.0, 2.0, 4.0, 4.0]], (SIZE, SIZE))
    assert mask.sum() == 16 + 16 - 4
    assert box_mask([], (SIZE, 8)).shape == (SIZE, 8)
    assert not box_mask([], (SIZE, SIZE)).any()
    assert not box_mask(None, (SIZE, SIZE)).any()
    assert box_mask(np.array([np.array([0.0, 0.0, 2.0, 3.0])], dtype=object), (4, 4)).sum() == 6
    with pytest.raises(DataError):
        box_mask([[0.0, 0.0, -1.0, 2.0]], (SIZE, SIZE))


# --- localisation_table -----------------------------------------------------------------------


def test_map_equal_to_boxes_is_perfect():
    maps = masks_of(BOXES).astype(np.float32)
    table = localisation_table(maps, BOXES)
    assert list(table.columns) == ["metric", "value", "n_images", "threshold", "ci_low", "ci_high"]
    for metric in ("pixel_auroc_pooled", "pixel_auroc_mean", "pointing_game", "dice"):
        assert value(table, metric) == pytest.approx(1.0)
    assert (table["n_images"] == len(BOXES)).all()
    dice = table[table["metric"] == "dice"]
    assert 0.0 < float(dice["threshold"].iloc[0]) <= 1.0
    assert table.loc[table["metric"] != "dice", "threshold"].isna().all()


def test_inverted_map_has_auroc_zero():
    maps = 1.0 - masks_of(BOXES).astype(np.float32)
    table = localisation_table(maps, BOXES)
    assert value(table, "pixel_auroc_pooled") == pytest.approx(0.0)
    assert value(table, "pixel_auroc_mean") == pytest.approx(0.0)
    assert value(table, "pointing_game") == 0.0


def test_map_peaking_outside_the_boxes_misses_the_pointing_game():
    masks = masks_of(BOXES)
    maps = 0.5 * masks.astype(np.float32)
    maps[:, 15, 0] = 1.0  # outside every box: one negative above every positive
    assert not masks[:, 15, 0].any()
    table = localisation_table(maps, BOXES)
    assert value(table, "pointing_game") == 0.0
    negatives = (~masks).reshape(len(BOXES), -1).sum(axis=1)
    assert value(table, "pixel_auroc_mean") == pytest.approx(np.mean(1 - 1 / negatives))
    assert value(table, "pixel_auroc_pooled") == pytest.approx(1 - len(BOXES) / negatives.sum())


def test_pooled_auroc_differs_from_per_image_mean():
    boxes = [[[0.0, 0.0, 4.0, 4.0]], [[0.0, 0.0, 8.0, 8.0]]]
    masks = masks_of(boxes)
    maps = np.where(masks, 1.0, 0.5).astype(np.float32)  # image 0: inside 1, outside 0.5
    maps[1] = np.where(masks[1], 0.4, 0.3)  # image 1: inside 0.4 < image 0's outside
    table = localisation_table(maps, boxes)
    assert value(table, "pixel_auroc_mean") == pytest.approx(1.0)
    pos, neg = masks.reshape(2, -1).sum(1), (~masks).reshape(2, -1).sum(1)
    expected = 1 - pos[1] * neg[0] / (pos.sum() * neg.sum())
    assert value(table, "pixel_auroc_pooled") == pytest.approx(expected)


def test_dice_of_a_shifted_box_at_the_best_and_at_a_given_threshold():
    boxes = [[[4.0, 4.0, 4.0, 4.0]]]
    maps = box_mask([[6.0, 4.0, 4.0, 4.0]], (SIZE, SIZE))[None].astype(np.float32)
    table = localisation_table(maps, boxes)
    assert value(table, "dice") == pytest.approx(2 * 8 / 32)  # half the box overlaps
    assert float(table.loc[table["metric"] == "dice", "threshold"].iloc[0]) > 0
    everything = localisation_table(maps, boxes, thresholds=[0.0])  # every pixel flagged
    assert value(everything, "dice") == pytest.approx(2 * 16 / (16 + SIZE * SIZE))
    assert float(everything.loc[everything["metric"] == "dice", "threshold"].iloc[0]) == 0.0


def test_images_without_boxes_are_ignored():
    maps = masks_of(BOXES).astype(np.float32)
    rng = np.random.default_rng(1)
    noise = rng.random((4, SIZE, SIZE), dtype=np.float32)
    no_boxes = [[], None, float("nan"), [[0.6, 0.6, 0.8, 0.8]]]  # the last covers no centre
    table = localisation_table(
        np.concatenate([noise[:2], maps, noise[2:]]), [*no_boxes[:2], *BOXES, *no_boxes[2:]]
    )
    pd.testing.assert_frame_equal(table, localisation_table(maps, BOXES))
    assert (table["n_images"] == len(BOXES)).all()


def test_subsampled_pooled_auroc_does_not_depend_on_the_chunk_size():
    rng = np.random.default_rng(2)
    masks = masks_of(BOXES)
    maps = (0.3 * masks + rng.random(masks.shape)).astype(np.float32)
    kwargs = dict(max_pixels=300, seed=5)
    small = localisation_table(maps, BOXES, chunk=1, **kwargs)
    pd.testing.assert_frame_equal(small, localisation_table(maps, BOXES, chunk=256, **kwargs))
    full = localisation_table(maps, BOXES)
    assert value(small, "pixel_auroc_pooled") != value(full, "pixel_auroc_pooled")
    assert value(small, "pixel_auroc_mean") == value(full, "pixel_auroc_mean")
    assert 0.6 < value(small, "pixel_auroc_pooled") < 1.0


def test_no_boxed_image_gives_nan_and_bad_inputs_raise():
    maps = np.zeros((2, SIZE, SIZE), np.float32)
    table = localisation_table(maps, [[], []])
    assert table["value"].isna().all() and (table["n_images"] == 0).all()
    with pytest.raises(DataError):
        localisation_table(maps, [[]])
    bad = masks_of(BOXES).astype(np.float32)
    bad[0, 0, 0] = np.nan
    with pytest.raises(DataError):
        localisation_table(bad, BOXES)


# --- ground_truth_table -----------------------------------------------------------------------

CONTRAST = 0.25


@pytest.fixture(scope="module")
def phantoms():
    """12 images: 6 with a square lesion of contrast 0.25, 6 normal; healthy in [0.3, 0.6]."""
    rng = np.random.default_rng(3)
    n = 12
    healthy = (0.3 + 0.3 * rng.random((n, SIZE, SIZE))).astype(np.float32)
    lesions = np.zeros((n, SIZE, SIZE), np.uint8)
    for i in range(6):
        r, c = rng.integers(0, SIZE - 6, size=2)
        lesions[i, r : r + 3 + i % 3, c : c + 4] = 1
    original = (healthy + CONTRAST * lesions).astype(np.float32)
    positive = lesions.reshape(n, -1).any(axis=1)
    return original, healthy, lesions, positive


def table_for(phantoms, counterfactual, chunk=256, **kwargs):
    original, healthy, lesions, positive = phantoms
    maps = np.abs(original - counterfactual)
    return ground_truth_table(
        original, counterfactual, maps, healthy, lesions, positive, chunk=chunk, **kwargs
    )


def test_ideal_counterfactual_removes_the_lesion_exactly(phantoms):
    original, healthy, lesions, positive = phantoms
    table = table_for(phantoms, healthy)
    assert list(table.columns) == [
        "metric", "value", "n_images", "subset", "threshold", "ci_low", "ci_high"
    ]  # fmt: skip
    lesion = "lesion images"
    assert value(table, "cf_error_inside", lesion) == pytest.approx(0.0)
    assert value(table, "cf_error_outside", lesion) == pytest.approx(0.0)
    assert value(table, "original_error_inside", lesion) == pytest.approx(CONTRAST, abs=1e-6)
    assert value(table, "original_error_outside", lesion) == pytest.approx(0.0)
    assert value(table, "lesion_removed_fraction", lesion) == pytest.approx(1.0)
    for metric in ("pixel_auroc_pooled", "pixel_auroc_mean", "pointing_game", "dice"):
        assert value(table, metric, lesion) == pytest.approx(1.0)
    assert value(table, "cf_change", "normal images") == pytest.approx(0.0)
    n = table.set_index("metric")["n_images"]
    assert n["cf_change"] == 6 and n["dice"] == 6 and n["lesion_removed_fraction"] == 6


def test_untouched_counterfactual_removes_nothing(phantoms):
    original = phantoms[0]
    table = table_for(phantoms, original.copy())
    lesion = "lesion images"
    assert value(table, "lesion_removed_fraction", lesion) == pytest.approx(0.0)
    assert value(table, "cf_error_inside", lesion) == pytest.approx(CONTRAST, abs=1e-6)
    assert value(table, "cf_error_outside", lesion) == pytest.approx(0.0)


def test_constant_change_on_normal_images(phantoms):
    original, healthy, lesions, positive = phantoms
    counterfactual = healthy.copy()
    counterfactual[~positive] -= np.float32(0.1)
    table = table_for(phantoms, counterfactual)
    assert value(table, "cf_change", "normal images") == pytest.approx(0.1, abs=1e-6)
    assert value(table, "lesion_removed_fraction", "lesion images") == pytest.approx(1.0)


def test_ground_truth_does_not_depend_on_the_chunk_size(phantoms):
    original, healthy, lesions, positive = phantoms
    rng = np.random.default_rng(4)
    counterfactual = healthy + 0.5 * CONTRAST * lesions + 0.05 * rng.random(healthy.shape)
    counterfactual = counterfactual.astype(np.float32)
    one = table_for(phantoms, counterfactual, chunk=1, max_pixels=500)
    pd.testing.assert_frame_equal(one, table_for(phantoms, counterfactual, max_pixels=500))
    removed = value(one, "lesion_removed_fraction", "lesion images")
    assert 0.3 < removed < 0.6  # half the contrast removed, plus noise of mean 0.025


def test_integer_healthy_images_are_rejected(phantoms):
    original, healthy, lesions, positive = phantoms
    stored = np.rint(healthy * 255).astype(np.uint8)
    with pytest.raises(DataError, match="dequantize"):
        ground_truth_table(original, healthy, original - healthy, stored, lesions, positive)


@pytest.mark.parametrize("keep_bytes", [0, 1 << 30])
def test_pixel_aurocs_and_dice_against_scikit_learn_and_counting(monkeypatch, keep_bytes):
    # maps with many ties (values on a grid of 8 levels): the stage's sorted-value counting
    # equals scikit-learn's AUROC and a per-threshold count of the Dice, whether the first
    # pass's sorted values are kept for the second or read again
    monkeypatch.setattr(localisation, "KEEP_BYTES", keep_bytes)
    rng = np.random.default_rng(7)
    masks = masks_of(BOXES)
    maps = (np.round(8 * (0.4 * masks + rng.random(masks.shape))) / 8).astype(np.float32)
    thresholds = [0.25, 0.5, 0.75]
    table = localisation_table(maps, BOXES, thresholds=thresholds, chunk=3)
    flat, labels = maps.reshape(len(maps), -1), masks.reshape(len(masks), -1)
    per_image = [roc_auc_score(m, v) for m, v in zip(labels, flat, strict=True)]
    assert value(table, "pixel_auroc_mean") == pytest.approx(np.mean(per_image), abs=1e-12)
    pooled = roc_auc_score(labels.ravel(), flat.ravel())
    assert value(table, "pixel_auroc_pooled") == pytest.approx(pooled, abs=1e-12)

    def dice_at(t):
        flagged = flat >= t
        return np.mean(2 * (labels & flagged).sum(1) / (labels.sum(1) + flagged.sum(1)))

    dice = [dice_at(t) for t in thresholds]
    assert value(table, "dice") == pytest.approx(max(dice), abs=1e-12)
    row = table[table["metric"] == "dice"]
    assert float(row["threshold"].iloc[0]) == thresholds[int(np.argmax(dice))]
