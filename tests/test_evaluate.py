"""The evaluate stage end to end on constructed counterfactuals with exact answers.

Setting ``cfg 1`` is an oracle on the test split (its counterfactual is the true healthy
image; on calibration it also changes one Normal image); ``cg 1`` does nothing (the
counterfactual is the original); ``cfg 2`` is an oracle on calibration and does nothing on
test. Every metric has a known value, and the summary must name the setting that is best on
calibration (cfg 2) with its test value, not the test maximum (cfg 1).
"""

import numpy as np
import pandas as pd
import pytest

from cxrgen import io
from cxrgen.counterfactual.scores import difference_scores
from cxrgen.data.classes import write_classes
from cxrgen.errors import DataError
from cxrgen.evaluation.evaluate import EMPTY_COLUMNS, EvaluateConfig, evaluate
from cxrgen.evaluation.evaluation_figures import FIGURES

N, SIZE = 48, 16
CLASSES = ["Normal", "Lung Opacity"]


def build(root, ground_truth=True):
    """Store + inversion + two counterfactual folders; opacity images carry a square lesion."""
    rng = np.random.default_rng(0)
    yy = np.mgrid[0:SIZE, 0:SIZE][0] / SIZE
    healthy = np.clip(0.3 + 0.3 * yy + 0.02 * rng.standard_normal((N, SIZE, SIZE)), 0, 1)
    label = np.arange(N) % 2
    lesion = np.zeros((N, SIZE, SIZE), np.uint8)
    lungs = np.zeros((N, SIZE, SIZE), np.uint8)
    lungs[:, 2:14, 1:7], lungs[:, 2:14, 9:15] = 1, 2
    index = []
    for i in range(N):
        side = (i // 8) % 2  # 0: right lung (image left), 1: left lung
        size = 2 + (i // 4) % 4 if label[i] else 0  # 2..5 pixels: severity
        boxes, extent = [], {"extent_right": 0.0, "extent_left": 0.0}
        if size:
            x0 = 2 if side == 0 else 10
            lesion[i, 5 : 5 + size, x0 : x0 + size] = 1
            boxes = [[float(x0), 5.0, float(size), float(size)]]
            extent["extent_left" if side else "extent_right"] = float(size - 1)
        index.append(
            dict(row=i, image_id=f"im{i:02d}", patient_id=f"p{i:02d}",
                 class_name=CLASSES[label[i]], n_boxes=len(boxes), boxes=boxes, **extent,
                 opacity_right=extent["extent_right"], opacity_left=extent["extent_left"],
                 extent_total=sum(extent.values()), opacity_total=sum(extent.values()))
        )  # fmt: skip
    images = np.clip(healthy + 0.4 * lesion, 0, 1)
    store = root / "store"
    store.mkdir()
    np.save(store / "images.npy", np.rint(images * 65535).astype(np.uint16))
    if ground_truth:
        np.save(store / "healthy.npy", np.rint(healthy * 65535).astype(np.uint16))
        np.save(store / "lesion_masks.npy", lesion)
        np.save(store / "lung_masks.npy", lungs)
    pd.DataFrame(index).to_parquet(store / "index.parquet")
    unit = np.load(store / "images.npy") / np.float32(65535)
    truth = np.rint(healthy * 65535) / np.float32(65535)

    latents = root / "latents"
    latents.mkdir()
    split = np.where((np.arange(N) // 2) % 2 == 0, "calibration", "test")
    table = pd.DataFrame(
        dict(row=np.arange(N), split=split, store_row=np.arange(N),
             image_id=[r["image_id"] for r in index],
             patient_id=[r["patient_id"] for r in index], class_name=[CLASSES[v] for v in label],
             label=label, cond_label=label, recon_psnr=40.0, recon_max_abs=0.01, recon_mae=0.001,
             latent_std=0.8)
    )  # fmt: skip
    table.to_parquet(latents / "index.parquet")
    np.save(latents / "latents.npy", np.zeros((N, SIZE, SIZE), np.float32))
    np.save(latents / "reconstructions.npy", unit.astype(np.float32))
    io.write_json(
        latents / "trajectory.json",
        dict(timesteps=[10], alpha_bars=[1.0, 0.9], steps=1, depth=0.5,
             conditioning="unconditional", label_informed=False,
             splits=["calibration", "test"], classes=CLASSES),
    )  # fmt: skip
    folders = []
    calibration = (split == "calibration")[:, None, None]
    spoiled = truth.copy()
    checker = (np.indices((SIZE, SIZE)).sum(axis=0) % 2).astype(np.float32)
    # a calibration Normal image, half its pixels darkened by more than any lesion is bright
    spoiled[0] = np.clip(spoiled[0] - 0.6 * checker, 0, 1)
    for method, scale, cf in (
        ("cfg", 1, spoiled),
        ("cg", 1, unit),
        ("cfg", 2, np.where(calibration, truth, unit)),
    ):
        out = root / "cf" / method / str(scale)
        out.mkdir(parents=True)
        cf = cf.astype(np.float32)
        diff = unit - cf
        np.save(out / "counterfactuals.npy", cf)
        np.save(out / "diff.npy", diff)
        np.save(out / "absdiff.npy", np.abs(diff))
        scores = pd.DataFrame(difference_scores(unit, cf, unit))
        scores = pd.concat([table[["row", "split", "store_row", "image_id", "patient_id",
                                   "class_name", "label"]], scores], axis=1)  # fmt: skip
        scores.insert(1, "method", method)
        scores.insert(2, "scale", float(scale))
        scores.to_parquet(out / "scores.parquet")
        folders.append(out)
    write_classes(root / "classes.json", CLASSES)
    return store, latents, folders


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    store, latents, folders = build(root)
    cfg = EvaluateConfig(n_boot=100, severity_folds=3, map_smoothing=(0.0, 0.05))
    summary = evaluate(latents, folders, store, root / "metrics", cfg, progress=False)
    tables = {p.stem: pd.read_parquet(p) for p in (root / "metrics").glob("*.parquet")}
    return root, tables, summary


def value(table, **where):
    where = {"split": "test", **where}
    if "smoothing" in table.columns and "smoothing" not in where and where.get("map"):
        where["smoothing"] = 0.0  # the exact maps
    sel = table
    for key, v in where.items():
        sel = sel[sel[key] == v]
    assert len(sel) == 1, (where, sel)
    return float(sel["value"].iloc[0])


def test_detection_oracle_separates_and_no_change_does_not(evaluated):
    _, t, _ = evaluated
    det = t["detection"]
    cfg1 = dict(method="cfg", scale=1.0, statistic="sum_abs", metric="auroc")
    assert value(det, **cfg1) == pytest.approx(1.0)
    assert value(det, **cfg1, split="calibration") < 1  # the changed Normal image ranks high
    assert value(det, method="cg", statistic="sum_abs", metric="auroc") == pytest.approx(0.5)
    assert value(det, split="published", statistic="published", metric="auroc") == 0.838
    assert set(det["split"]) == {"calibration", "test", "published"}
    # patient-level intervals: every image its own patient here, 12 + 12 per split
    row = det[(det["method"] == "cg") & (det["split"] == "test") & (det["metric"] == "auroc")]
    assert (row["n_pos"] == 12).all() and (row["n_neg"] == 12).all()
    assert "classifier" not in set(det["method"])  # no classifier given


def test_ground_truth_and_localisation_of_the_oracle(evaluated):
    _, t, _ = evaluated
    gt, loc = t["ground_truth"], t["localisation"]
    oracle = dict(method="cfg", scale=1.0, subset="lesion images")
    for pixel_map in ("abs", "removed"):  # the oracle only removes: both maps are exact
        auroc = value(gt, metric="pixel_auroc_pooled", map=pixel_map, **oracle)
        assert auroc == pytest.approx(1.0)
        assert value(loc, method="cfg", scale=1.0, map=pixel_map, metric="dice") == 1.0
    untouched = value(gt, metric="pixel_auroc_pooled", method="cg", map="abs",
                      subset="lesion images")  # fmt: skip
    assert untouched == pytest.approx(0.5)  # all-zero maps rank nothing
    # the fainter half of the lesions (at most the median contrast of the split): the oracle
    # still finds them exactly, no change ranks nothing
    faint = dict(metric="pixel_auroc_pooled", map="abs", subset="fainter half")
    assert value(gt, method="cfg", scale=1.0, **faint) == pytest.approx(1.0)
    assert value(gt, method="cg", **faint) == pytest.approx(0.5)
    # the oracle changes nothing outside the lesion
    ratio = value(gt, metric="change_outside_over_inside", **oracle)
    assert ratio == pytest.approx(0.0, abs=1e-6)
    assert value(gt, metric="lesion_removed_fraction", **oracle) == pytest.approx(1.0)
    assert value(gt, metric="cf_error_inside", **oracle) == pytest.approx(0.0, abs=1e-6)
    normal = dict(method="cfg", scale=1.0, subset="normal images", metric="cf_change")
    assert value(gt, **normal) == pytest.approx(0.0, abs=1e-6)
    # one of the 12 calibration Normal images changed by 0.3-0.6 on half its pixels
    assert 0.15 / 12 < value(gt, **normal, split="calibration") < 0.3 / 12
    nothing = dict(method="cg", subset="lesion images")
    assert value(gt, metric="lesion_removed_fraction", **nothing) == pytest.approx(0.0)
    oracle_loc = dict(method="cfg", scale=1.0, map="abs")
    assert value(loc, **oracle_loc, metric="pixel_auroc_pooled") == pytest.approx(1.0)
    assert value(loc, **oracle_loc, metric="pointing_game") == pytest.approx(1.0)
    assert set(gt["map"]) == {"", "abs", "removed"}  # "": the error rows, map-independent
    # the test Dice is taken at the threshold chosen on calibration
    dice = loc[(loc["metric"] == "dice") & (loc["method"] == "cfg") & (loc["map"] == "abs")]
    for _, group in dice.groupby(["scale", "smoothing"]):
        thresholds = group.set_index("split")["threshold"]
        assert thresholds["test"] == thresholds["calibration"]


def test_severity_table2_spectra_and_summary(evaluated):
    root, t, summary = evaluated
    sev = t["severity"]
    oracle = dict(method="cfg", scale=1.0, score="extent_total", metric="spearman",
                  subset="opacity images")  # fmt: skip
    rho = value(sev, **oracle, feature_set="ridge on per-lung features")
    assert rho > 0.9, rho
    ranked = value(sev, **oracle, feature_set="sum_removed per lung")
    assert ranked > 0.95, ranked  # grows with the lesion (float noise splits equal sizes)
    mae = value(sev, **{**oracle, "metric": "mae"}, feature_set="sum_removed per lung")
    assert mae < 0.6, mae  # fitted on calibration, the test lesions are read in RALO points
    # nothing is changed on test by cg: its reading cannot rank the test lesions
    nothing = value(sev, **{**oracle, "method": "cg"}, feature_set="sum_removed per lung")
    assert not nothing > 0.5
    t2 = t["table2"]
    sums = t2[(t2["method"] == "cfg") & (t2["scale"] == 1) & (t2["split"] == "test")]
    sums = sums.set_index("class_name")["mean"]
    assert sums["Normal"] == pytest.approx(0.0, abs=1e-3) and sums["Lung Opacity"] > 1
    assert set(t2["method"]) >= {"cfg", "cg", "paper"}
    assert set(t["spectra"]["image_kind"]) == {"original", "counterfactual", "difference"}
    curves = t["spectra_curves"]
    assert curves[curves["method"] == "cfg"]["power"].notna().sum() > 10
    assert set(t["spectra"]["split"]) == {"test"}
    # chosen on calibration (cfg 2 is perfect there), reported on test (where it does nothing)
    best = summary[summary["metric"] == "AUROC, setting chosen on calibration"].iloc[0]
    assert best["setting"].startswith("cfg 2") and best["value"] == pytest.approx(0.5)
    assert best["split"] == "test" and best["ci_low"] <= 0.5 <= best["ci_high"]
    assert (summary.loc[summary["section"] != "detection", "split"].isin(["test"])).all()
    markdown = (root / "metrics" / "summary.md").read_text()
    assert "## detection" in markdown and "chosen on the calibration split" in markdown
    gt = summary[summary["section"] == "ground truth (phantoms)"].set_index("metric")
    # cfg 1 and cfg 2 both localise the calibration lesions exactly: the tie goes to the
    # lower scale, the raw abs map (listed first), and the numbers are cfg 1's on test
    assert gt.loc["pixel_auroc_pooled", "setting"] == "cfg 1, abs map, smoothing 0"
    assert gt.loc["pixel_auroc_pooled", "value"] == pytest.approx(1.0)
    assert gt.loc["lesion_removed_fraction", "value"] == pytest.approx(1.0)
    inversion = t["inversion"].set_index(["split", "class_name"])
    assert inversion.loc[("test", "all"), "psnr_median"] == 40.0


def test_label_informed_inversion_has_no_detection_or_severity_headline(tmp_path):
    store, latents, folders = build(tmp_path)
    meta = io.read_json(latents / "trajectory.json")
    io.write_json(latents / "trajectory.json", {**meta, "conditioning": "label_informed",
                                                "label_informed": True})  # fmt: skip
    summary = evaluate(latents, folders, store, tmp_path / "m", EvaluateConfig(n_boot=20),
                       progress=False)  # fmt: skip
    sections = set(summary["section"])
    assert not sections & {"detection", "severity", "localisation (boxes)"}
    assert "label-informed" in sections
    note = summary.loc[summary["section"] == "label-informed", "metric"].iloc[0]
    assert "not a detection" in note
    for name in ("detection", "severity", "ground_truth"):
        assert pd.read_parquet(tmp_path / "m" / f"{name}.parquet")["label_informed"].all()


def test_tables_without_ground_truth_are_written_empty(tmp_path):
    store, latents, folders = build(tmp_path, ground_truth=False)
    evaluate(latents, folders, store, tmp_path / "m", EvaluateConfig(n_boot=20), progress=False)
    gt = pd.read_parquet(tmp_path / "m" / "ground_truth.parquet")
    assert gt.empty and list(gt.columns) == [*EMPTY_COLUMNS["ground_truth"], "label_informed"]
    sev = pd.read_parquet(tmp_path / "m" / "severity.parquet")
    assert not sev.empty  # RALO scores exist; image halves stand in for the lungs


def test_counterfactuals_of_another_inversion_are_refused(tmp_path):
    store, latents, folders = build(tmp_path)
    scores = pd.read_parquet(folders[0] / "scores.parquet")
    scores["image_id"] = scores["image_id"][::-1].to_numpy()
    scores.to_parquet(folders[0] / "scores.parquet")
    with pytest.raises(DataError, match="another inversion"):
        evaluate(latents, folders, store, tmp_path / "m", EvaluateConfig(), progress=False)


def test_cli_evaluates_and_draws_the_figures(tmp_path):
    from cxrgen import cli

    store, latents, _ = build(tmp_path)
    common = ["--latents", str(latents), "--counterfactuals", str(tmp_path / "cf")]
    common += ["--store", str(store)]
    argv = ["-q", "evaluate", *common, "--output", str(tmp_path / "m"), "--n-boot", "20"]
    assert cli.main([*argv, "--severity-folds", "3"]) == 0
    argv = ["-q", "figures", *common, "--metrics", str(tmp_path / "m")]
    assert cli.main([*argv, "--output", str(tmp_path / "f")]) == 0
    names = sorted(p.name for p in (tmp_path / "f").glob("*.png"))
    assert names == sorted(f"{n}.png" for n in FIGURES)
    summary = pd.read_parquet(tmp_path / "m" / "summary.parquet")
    chosen = summary.set_index("metric").loc["AUROC, setting chosen on calibration", "setting"]
    assert chosen.startswith("cfg 2")


def test_smoothed_maps_are_gaussian_filtered_per_image():
    from scipy.ndimage import gaussian_filter

    from cxrgen.evaluation.inputs import SmoothedView

    maps = np.zeros((3, 16, 16), np.float32)
    maps[1, 8, 8] = 1.0
    view = SmoothedView(maps, 1.5)
    np.testing.assert_allclose(view[1:2][0], gaussian_filter(maps[1], 1.5, mode="nearest"))
    assert view[np.array([0, 2])].max() == 0  # no bleeding between images
    assert view[1].sum() == pytest.approx(1.0, rel=1e-4) and view[1].max() < 0.1
    assert SmoothedView(maps, 0)[1].max() == 1.0


def test_removed_map_ignores_density_the_counterfactual_adds():
    """A counterfactual that removes the lesion and adds as much elsewhere: the |diff| map
    flags both places, the removed (positive) part only the lesion."""
    from cxrgen.evaluation.ground_truth import lesion_agreement
    from cxrgen.evaluation.inputs import SmoothedView

    lesion, added = np.zeros((4, 16, 16), np.uint8), np.zeros((4, 16, 16), np.float32)
    lesion[:, 4:8, 2:6] = 1
    added[:, 4:8, 10:14] = 1
    diff = 0.4 * lesion - 0.4 * added  # original - counterfactual
    agreement = {
        name: lesion_agreement(view, lesion).set_index("metric").loc["pixel_auroc_pooled"]
        for name, view in (
            ("abs", SmoothedView(np.abs(diff), 0)),
            ("removed", SmoothedView(diff, 0, positive_part=True)),
        )
    }
    assert agreement["removed"]["value"] == pytest.approx(1.0)
    # 16 lesion pixels tie with 16 added ones at the top: AUROC = 1 - 0.5 * 16 / 240
    assert agreement["abs"]["value"] == pytest.approx(1 - 0.5 * 16 / 240)


def test_fainter_half_and_change_outside_over_inside_exact():
    from cxrgen.evaluation import ground_truth

    contrast = np.array([0.1, 0.5, 0.2, 0.4, 9.0])
    assert ground_truth.fainter_half(contrast, np.array([0, 1, 2, 3])).tolist() == [0, 2]
    original = np.zeros((2, 4, 4), np.float32)
    healthy = np.zeros_like(original)
    lesion = np.zeros((2, 4, 4), np.uint8)
    lesion[:, :2, :2] = 1  # 4 pixels inside, 12 outside
    cf = original.copy()
    cf[0, :2, :2] = 0.2
    cf[0, 2:, :] = 0.15  # 8 of the 12 outside pixels: mean 0.1 outside
    cf[1, :2, :2] = 0.4
    errors = ground_truth.image_errors(original, cf, healthy, lesion)
    assert errors["change_in"].tolist() == pytest.approx([0.2, 0.4])
    assert errors["change_out"].tolist() == pytest.approx([0.1, 0.0])
    table = ground_truth.error_summary(errors, [True, True])
    ratio = table.set_index("metric").loc["change_outside_over_inside", "value"]
    assert ratio == pytest.approx(0.05 / 0.3)  # a ratio of the means, not a mean of ratios
