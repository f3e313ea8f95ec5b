"""The CI smoke workflow end to end, its incremental reruns, and its errors on bad input."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import report_browser
from workflow_helpers import overlay, planned_jobs, snakemake

from cxrgen.counterfactual.config import scale_name

# what any change of a counterfactual replans after the counterfactual jobs themselves
EVALUATION = {"evaluate": 1, "evaluation_figures": 1, "run_summary": 1, "all": 1}
# the same when the change also reaches the ralo data set, which rsna's models score and
# whose invert / counterfactual sections are rsna's with its own keys on top (apply_model)
BOTH_EVALUATIONS = {**EVALUATION, "evaluate": 2, "evaluation_figures": 2}
# ralo's counterfactual jobs: cg 10 and msr 3 (config.yaml)
RALO_COUNTERFACTUALS = 2
# for a person to look at after a run: the report as a browser shows it
ARTIFACTS = Path(__file__).resolve().parents[1] / "results" / "test-artifacts"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("smoke")
    snakemake(workdir)
    return workdir


def test_data_artefacts(smoke_run):
    res = smoke_run / "results"
    store = res / "data" / "rsna"
    images = np.load(store / "images.npy", mmap_mode="r")
    index = pd.read_parquet(store / "index.parquet")
    rejected = pd.read_parquet(store / "rejected.parquet")
    assert images.shape == (len(index), 32, 32) and images.dtype == np.uint16
    assert (index["row"] == np.arange(len(index))).all()
    assert images.max() > 30000 and images.min() < 10000  # full dynamic range in use
    manifest = pd.read_parquet(res / "phantoms" / "rsna" / "manifest.parquet")
    n_files = len(list((res / "phantoms" / "rsna" / "stage_2_train_images").iterdir()))
    assert len(index) + len(rejected) == n_files  # every input file in exactly one table
    assert len(rejected) >= 2  # the junk files of the smoke preset
    assert set(index["class_name"]) <= {"Normal", "Lung Opacity", "No Lung Opacity / Not Normal"}
    assert len(index) == int((~manifest["corrupt"]).sum())
    healthy = np.load(store / "healthy.npy", mmap_mode="r")
    assert healthy.shape == images.shape

    split = pd.read_parquet(res / "splits" / "rsna" / "split.parquet")
    counts = pd.read_parquet(res / "splits" / "rsna" / "counts.parquet")
    kept = split[split.split != "excluded"]
    assert set(kept.split) == {"train", "calibration", "test"}
    assert (kept.groupby("patient_id").split.nunique() == 1).all()
    for name in ("calibration", "test"):  # both classes wherever a setting is chosen or scored
        assert kept[kept.split == name].label.nunique() == 2
    assert counts.n_images.sum() == len(index)
    assert json.loads((res / "splits" / "rsna" / "classes.json").read_text())["names"] == [
        "Normal",
        "Lung Opacity",
    ]
    gan = pd.read_parquet(res / "splits" / "covidqu" / "split.parquet")
    assert set(gan.class_name) == {"Normal", "COVID-19", "Non-COVID"}
    assert set(gan.split) == {"train", "valid", "test"}
    assert (gan.split == "valid").sum() == 3 * 4
    for rule in ("phantoms", "preprocess", "split"):
        assert (res / "logs" / rule / "rsna.log").exists()
        assert (res / "benchmarks" / rule / "rsna.tsv").exists()
    assert (res / "figures" / "phantoms_rsna.png").stat().st_size > 10_000
    prov = json.loads((store / "provenance.json").read_text())
    assert prov["config"]["size"] == 32 and prov["packages"]["pydicom"]


def test_finished_run_plans_nothing(smoke_run):
    assert planned_jobs(smoke_run) == {}


def test_split_seed_change_replans_split_not_preprocess(smoke_run, tmp_path):
    seed = overlay(tmp_path / "seed.yaml", {"datasets": {"rsna": {"split": {"seed": 7}}}})
    jobs = planned_jobs(smoke_run, configs=(seed,))
    assert jobs.get("split") == 1
    assert "preprocess" not in jobs and "phantoms" not in jobs


def test_preprocess_change_replans_preprocess_and_downstream(smoke_run, tmp_path):
    size = overlay(tmp_path / "size.yaml", {"datasets": {"covidqu": {"preprocess": {"size": 16}}}})
    jobs = planned_jobs(smoke_run, configs=(size,))
    assert jobs.get("preprocess") == 1 and jobs.get("split") == 1
    assert "phantoms" not in jobs


def test_missing_data_folder_is_named(tmp_path):
    cfg = overlay(tmp_path / "c.yaml", {"datasets": {"rsna": {"source": str(tmp_path / "nope")}}})
    proc = snakemake(tmp_path, "results/splits/rsna/split.parquet", configs=(cfg,), check=False)
    assert proc.returncode != 0
    assert "does not exist" in proc.stderr + proc.stdout and "nope" in proc.stderr + proc.stdout


def test_empty_data_folder_fails_with_message(tmp_path):
    (tmp_path / "empty").mkdir()
    cfg = overlay(tmp_path / "c.yaml", {"datasets": {"rsna": {"source": str(tmp_path / "empty")}}})
    proc = snakemake(tmp_path, "results/data/rsna/index.parquet", configs=(cfg,), check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "cxrgen error" in out and "is empty: no image files" in out


def test_labels_csv_problems_fail_with_message(smoke_run, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(smoke_run / "results" / "phantoms" / "rsna", raw)
    labels = pd.read_csv(raw / "stage_2_train_labels.csv")
    labels.drop(columns=["Target"]).to_csv(raw / "stage_2_train_labels.csv", index=False)
    cfg = overlay(tmp_path / "c.yaml", {"datasets": {"rsna": {"source": str(raw)}}})
    proc = snakemake(tmp_path, "results/data/rsna/index.parquet", configs=(cfg,), check=False)
    assert proc.returncode != 0 and "Target" in proc.stdout + proc.stderr

    extra = pd.concat([labels, labels.iloc[:1].assign(patientId="no-such-image")])
    extra.to_csv(raw / "stage_2_train_labels.csv", index=False)
    proc = snakemake(tmp_path, "results/data/rsna/index.parquet", configs=(cfg,), check=False)
    assert proc.returncode != 0 and "no-such-image" in proc.stdout + proc.stderr


def test_bad_config_is_rejected_naming_the_key(tmp_path):
    cfg = overlay(tmp_path / "c.yaml", {"datasets": {"rsna": {"split": {"seeed": 1}}}})
    proc = snakemake(tmp_path, "--dry-run", configs=(cfg,), check=False)
    assert proc.returncode != 0 and "seeed" in proc.stderr + proc.stdout


def test_training_artefacts(smoke_run):
    from diffusers import DDPMScheduler, UNet2DModel

    models = smoke_run / "results" / "models" / "rsna"
    unet = UNet2DModel.from_pretrained(models / "diffusion" / "unet")
    assert unet.config.num_class_embeds == 3 and unet.config.sample_size == 32
    assert (
        DDPMScheduler.from_pretrained(models / "diffusion" / "scheduler").config[
            "num_train_timesteps"
        ]
        == 100
    )
    loss = pd.read_parquet(models / "diffusion" / "loss.parquet")
    assert loss["step"].max() == 30 and np.isfinite(loss["loss"]).all()
    valid = pd.read_parquet(models / "classifier" / "validation.parquet")
    assert len(valid) == 4 and valid["accuracy"].between(0, 1).all()
    for png in ("diffusion/samples.png", "diffusion/loss.png", "classifier/validation.png"):
        assert (models / png).stat().st_size > 5_000


def test_counterfactual_artefacts(smoke_run):
    res = smoke_run / "results"
    split = pd.read_parquet(res / "splits" / "rsna" / "split.parquet")
    held_out = split[split["split"].isin(["calibration", "test"]) & (split["label"] >= 0)]
    index = pd.read_parquet(res / "latents" / "rsna" / "index.parquet")
    assert sorted(index["image_id"]) == sorted(held_out["image_id"]) and len(index) >= 4
    assert index["split"].tolist() == sorted(index["split"])  # calibration, then test
    assert index["cond_label"].nunique() == 1  # label-blind: one conditioning for all
    latents = np.load(res / "latents" / "rsna" / "latents.npy", mmap_mode="r")
    assert latents.shape == (len(index), 32, 32)
    # 5 DDIM steps to t = 50 of 100 with a 30-step model: about 37 dB (the eps mismatch
    # between the up and the down path of a coarse, barely trained model; more steps and a
    # trained model raise it, see tests/test_counterfactual.py)
    assert index["recon_psnr"].min() > 30, index["recon_psnr"].tolist()
    for method, scale in (("cfg", "3"), ("cg", "10"), ("renoise", "3"), ("msr", "3"),
                          ("thor", "3"), ("stargan", "0.5")):  # fmt: skip
        out = res / "counterfactuals" / "rsna" / method / scale
        scores = pd.read_parquet(out / "scores.parquet")
        assert scores["image_id"].tolist() == index["image_id"].tolist()
        assert (scores["scale"] == float(scale)).all()
        absdiff = np.load(out / "absdiff.npy")
        np.testing.assert_allclose(scores["sum_abs"], absdiff.sum(axis=(1, 2)), rtol=1e-5)
        assert not any("lung" in c for c in scores.columns)  # no score reads a true mask
        assert scores["split"].tolist() == index["split"].tolist()
        assert (out / "examples.png").stat().st_size > 5_000


def test_evaluation_artefacts(smoke_run):
    metrics = smoke_run / "results" / "metrics" / "rsna" / "counterfactual"
    detection = pd.read_parquet(metrics / "detection.parquet")
    measured = detection[detection["source"] == "measured"]
    methods = {"cfg", "cg", "renoise", "msr", "thor", "stargan"}
    assert set(measured["method"]) == methods | {"classifier"}
    assert measured["value"].between(0, 1).all()
    assert (measured["ci_low"] <= measured["value"] + 1e-9).all()
    assert set(measured["split"]) == {"calibration", "test"}
    ground_truth = pd.read_parquet(metrics / "ground_truth.parquet")
    assert {"pixel_auroc_pooled", "lesion_removed_fraction"} <= set(ground_truth["metric"])
    severity = pd.read_parquet(metrics / "severity.parquet")
    assert set(severity["subset"]) == {"opacity images", "all images"}  # phantoms: RALO
    summary = pd.read_parquet(metrics / "summary.parquet")
    chosen = summary[summary["metric"] == "AUROC, setting chosen on calibration"].iloc[0]
    method, scale, statistic = chosen["setting"].split()
    same = (measured["method"] == method) & (measured["scale"] == float(scale))
    rows = measured[same & (measured["statistic"] == statistic) & (measured["metric"] == "auroc")]
    calibration = rows[rows["split"] == "calibration"]["value"].iloc[0]
    # the summary's setting is the calibration maximum, and its number is the test value
    auroc = measured[(measured["metric"] == "auroc") & (measured["method"] != "classifier")]
    assert calibration == auroc[auroc["split"] == "calibration"]["value"].max()
    assert chosen["value"] == rows[rows["split"] == "test"]["value"].iloc[0]
    assert chosen["split"] == "test"
    assert "## detection" in (metrics / "summary.md").read_text()


def test_ralo_is_scored_by_the_rsna_models_with_severity_on_its_own_test_split(smoke_run):
    """datasets.ralo.apply_model: rsna: no models of its own; its severity reading is fitted
    on its calibration split and reported on its test split, in its summary and the run's."""
    res = smoke_run / "results"
    assert not (res / "models" / "ralo").exists() and not (res / "checkpoints" / "ralo").exists()
    for rule in ("train_diffusion", "train_classifier", "train_stargan"):
        assert not (res / "logs" / rule / "ralo.log").exists()
    assert not (res / "phantoms" / "ralo" / "stage_2_train_labels.csv").exists()
    invert = json.loads((res / "latents" / "ralo" / "provenance.json").read_text())
    assert invert["model"].endswith("models/rsna/diffusion")
    index = pd.read_parquet(res / "latents" / "ralo" / "index.parquet")
    split = pd.read_parquet(res / "splits" / "ralo" / "split.parquet")
    assert set(split["split"]) == set(index["split"]) == {"calibration", "test"}
    assert len(index) == len(split) == 16  # every image: nothing is held back for training
    assert np.load(res / "latents" / "ralo" / "latents.npy", mmap_mode="r").shape[1:] == (32, 32)
    metrics = res / "metrics" / "ralo" / "counterfactual"
    severity = pd.read_parquet(metrics / "severity.parquet")
    test = severity[
        (severity["split"] == "test")
        & (severity["subset"] == "opacity images")
        & (severity["metric"] == "spearman")
        & (severity["score"] == "extent_total")
        & (severity["method"] != "classifier")
    ]
    assert set(test["method"]) == {"cg", "msr"} and test["value"].notna().any()
    assert test["value"].dropna().between(-1, 1).all()
    summary = pd.read_parquet(metrics / "summary.parquet")
    spearman = summary[summary["metric"] == "Spearman extent_total, opacity images"]
    assert len(spearman) == 1 and spearman["split"].iloc[0] == "test"
    assert np.isfinite(spearman["value"].iloc[0])
    detection = pd.read_parquet(metrics / "detection.parquet")
    assert detection[detection["source"] == "measured"]["value"].between(0, 1).all()
    run = pd.read_parquet(res / "summary.parquet")
    rows = run[(run["dataset"] == "ralo") & (run["section"] == "severity")]
    assert "Spearman extent_total, opacity images" in set(rows["metric"])


def test_report_renders_in_a_browser_with_every_figure_and_table(smoke_run):
    if report_browser.chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("no chromium: .ci/run installs Debian's chromium package")
        pytest.skip("no chromium (Debian package 'chromium'; .ci/run installs it)")
    report = smoke_run / "results" / "report.html"
    snakemake(smoke_run, "--report", str(report))
    home = report_browser.visible_text(report_browser.rendered_body(report))
    for category in (
        "Data",
        "Training",
        "Counterfactuals",
        "Evaluation",
        "Med-StyleGAN2",
        "Summary",
    ):
        assert category in home, home[:2000]
    listed = {
        ("Evaluation", "Tables"): ["summary.html", "detection.html", "table2.html"],
        ("Evaluation", "Figures"): [f"{f}.png" for f in ("fig3", "fig4", "roc_pr",
                                    "auroc_vs_scale", "severity", "gradcam")],
        ("Counterfactuals",): ["cfg", "cg", "renoise", "msr", "thor", "stargan"],
        ("Data",): ["phantoms_rsna.png", "counts.html"],
        ("Summary",): ["summary.html"],
    }  # fmt: skip
    for clicks, names in listed.items():
        text = report_browser.visible_text(report_browser.rendered_body(report, clicks))
        missing = [n for n in names if n not in text]
        assert not missing, (clicks, missing, text[:2000])
    shown = report_browser.rendered_body(report, ["Evaluation", "Figures", "@view"])
    assert "<img" in shown  # a figure opened in the page
    report_browser.screenshot(
        report, ARTIFACTS / "report_figure.png", ["Evaluation", "Figures", "@view"]
    )
    assert (ARTIFACTS / "report_figure.png").stat().st_size > 20_000


def test_new_guidance_scale_adds_one_job_and_reruns_nothing(smoke_run, tmp_path):
    scales = {"cfg": [3, 0.5], "cg": [10], "stargan": [0.5]}
    scales = {"datasets": {"rsna": {"guidance_scales": scales}}}
    jobs = planned_jobs(smoke_run, configs=(overlay(tmp_path / "s.yaml", scales),))
    assert jobs == {"counterfactual": 1, **EVALUATION}


def test_decoding_change_replans_counterfactuals_not_inversion(smoke_run, tmp_path):
    change = {"datasets": {"rsna": {"counterfactual": {"clip_denoised": True}}}}
    jobs = planned_jobs(smoke_run, configs=(overlay(tmp_path / "c.yaml", change),))
    assert jobs == {"counterfactual": 6 + RALO_COUNTERFACTUALS, **BOTH_EVALUATIONS}


def test_inversion_change_replans_inversion_and_counterfactuals_not_training(smoke_run, tmp_path):
    change = {"datasets": {"rsna": {"invert": {"steps": 4}}}}
    jobs = planned_jobs(smoke_run, configs=(overlay(tmp_path / "i.yaml", change),))
    assert jobs == {"invert": 2, "counterfactual": 6 + RALO_COUNTERFACTUALS, **BOTH_EVALUATIONS}


def test_one_stage_reruns_with_R_until_and_f(smoke_run):
    jobs = planned_jobs(smoke_run, "-R", "train_classifier")
    # cg counterfactuals (rsna's and ralo's, and ralo's msr on its cg first pass), the
    # evaluations' reference rows and the chest X-ray FID read it
    assert jobs == {
        "train_classifier": 1,
        "counterfactual": 1 + RALO_COUNTERFACTUALS,
        "gan_metrics": 1,
        **BOTH_EVALUATIONS,
    }
    assert planned_jobs(smoke_run, "-R", "train_classifier", "--until", "train_classifier") == {
        "train_classifier": 1
    }
    assert planned_jobs(smoke_run, "-f", "results/latents/rsna/index.parquet") == {"invert": 1}


def test_diffusion_change_replans_training_and_downstream_not_data(smoke_run, tmp_path):
    change = {"datasets": {"rsna": {"diffusion": {"lr": 5e-4}}}}
    jobs = planned_jobs(smoke_run, configs=(overlay(tmp_path / "d.yaml", change),))
    assert jobs == {
        "train_diffusion": 1,
        "train_classifier": 1,  # trained with the diffusion model's noise schedule
        "invert": 2,  # rsna's and ralo's, which rsna's model scores
        "counterfactual": 6 + RALO_COUNTERFACTUALS,
        "gan_metrics": 1,
        **BOTH_EVALUATIONS,
    }


def test_code_change_in_one_stage_replans_that_stage(smoke_run):
    """Outputs older than the stage's module, as after editing counterfactual/invert.py.

    Only the times are changed here, not the module's text. For inputs under 1 MB Snakemake
    also compares checksums recorded at the job and, the text being the same, would see no
    edit; an edit changes both. ``--max-checksum-file-size 0`` leaves the decision to the
    times, which is what this test can change without touching the source tree.
    """
    import os

    from workflow_helpers import ROOT

    module = ROOT / "src" / "cxrgen" / "counterfactual" / "invert.py"
    outputs = sorted((smoke_run / "results" / "latents" / "rsna").glob("*"))
    times = {p: p.stat().st_mtime for p in outputs}
    try:
        for p in outputs:
            os.utime(p, (module.stat().st_mtime - 60,) * 2)
        by_time = planned_jobs(smoke_run, "--max-checksum-file-size", "0")
        assert by_time == {"invert": 1, "counterfactual": 6, **EVALUATION}
    finally:
        for p, t in times.items():
            os.utime(p, (t, t))
    assert planned_jobs(smoke_run) == {}


def test_killed_training_resumes_from_its_checkpoint(smoke_run):
    """A job killed after its step-20 checkpoint: re-running the rule resumes there."""
    res = smoke_run / "results"
    ckpts = res / "checkpoints" / "rsna" / "diffusion"
    (ckpts / "step-00000030.pt").unlink()
    unet = res / "models" / "rsna" / "diffusion" / "unet" / "diffusion_pytorch_model.safetensors"
    before = unet.read_bytes()
    shutil.rmtree(unet.parents[1])  # a killed job has written none of its outputs
    jobs = planned_jobs(smoke_run, "--until", "train_diffusion")
    assert jobs == {"train_diffusion": 1}
    snakemake(smoke_run, "--until", "train_diffusion")
    log = (res / "logs" / "train_diffusion" / "rsna.log").read_text()
    assert "resuming from step 20" in log
    assert unet.read_bytes() == before  # bit-for-bit the uninterrupted run's weights


def test_gan_artefacts(smoke_run):
    res = smoke_run / "results"
    synthetic = res / "synthetic" / "covidqu" / "stargan"
    index = pd.read_parquet(synthetic / "index.parquet")
    images = np.load(synthetic / "images.npy", mmap_mode="r")
    assert images.shape == (len(index), 32, 32)
    # 2 sources per domain x 2 other targets x 2 outputs x 2 modes, for 3 domains
    assert len(index) == 3 * 2 * 2 * 2 * 2
    assert (index.source_domain != index.target_domain).all()
    metrics = pd.read_parquet(res / "metrics" / "covidqu" / "gan_metrics.parquet")
    per_target = metrics[(metrics.source == "mean") & (metrics.model == "stargan")]
    assert set(per_target.metric) == {"fid", "fid_stargan_v2", "fid_cxr", "lpips"}
    assert set(per_target.target) >= {"Normal", "COVID-19", "Non-COVID"}
    assert np.isfinite(per_target.value).all() and (per_target.value >= 0).all()
    assert (per_target[per_target.metric == "fid_cxr"].status == "ok").all()
    assert (res / "metrics" / "covidqu" / "gan_metrics.png").stat().st_size > 10_000


def test_apply_scores_unseen_images_with_the_runs_choices(smoke_run, tmp_path):
    """cxrgen apply on phantom DICOMs no split has seen: one row per usable file, the junk
    ones rejected with a reason, the run's calibration-chosen setting, overlays, RALO scores."""
    import subprocess
    import sys

    res = smoke_run / "results"
    new = tmp_path / "new"
    env = {**os.environ, "MPLBACKEND": "Agg"}
    cli = [sys.executable, "-m", "cxrgen.cli", "-q"]
    subprocess.run([*cli, "phantoms", "rsna", "--output", str(new), "--seed", "99",
                    "--n-patients", "3", "--max-images-per-patient", "1", "--min-size", "48",
                    "--max-size", "64", "--n-corrupt", "1"], check=True, env=env)  # fmt: skip
    images = new / "stage_2_train_images"
    out = tmp_path / "applied"
    subprocess.run([*cli, "apply", "--model-dir", str(res / "models" / "rsna"), "--input",
                    str(images), "--output", str(out), "--device", "cpu"],
                   check=True, env=env)  # fmt: skip
    table = pd.read_parquet(out / "scores.parquet")
    rejected = pd.read_csv(out / "rejected.csv")
    assert len(table) + len(rejected) == len(list(images.iterdir())) and len(rejected) >= 1
    assert rejected["reason"].str.len().min() > 10
    seen = set(pd.read_parquet(res / "splits" / "rsna" / "split.parquet")["image_id"])
    assert seen.isdisjoint(table["image_id"])
    summary = pd.read_parquet(res / "metrics" / "rsna" / "counterfactual" / "summary.parquet")
    chosen = summary[summary["metric"] == "AUROC, setting chosen on calibration"].iloc[0]
    method, scale, statistic = chosen["setting"].split()
    assert (table["method"] == method).all() and (table["scale"] == float(scale)).all()
    assert (table["statistic"] == statistic).all()
    folder = out / "counterfactuals" / method / scale
    scores = pd.read_parquet(folder / "scores.parquet")
    np.testing.assert_array_equal(table["score"], scores[statistic])
    absdiff = np.abs(np.load(folder / "diff.npy"))
    # the run read lungs predicted by covidqu's segmenter: so do the new images' features,
    # each lung a part of the map (not the image halves, which would sum to all of it)
    assert (table["region"] == "lung mask").all()
    lungs = table["right_sum_abs"] + table["left_sum_abs"]
    assert (lungs < 0.99 * absdiff.sum(axis=(1, 2))).all() and (table["right_sum_abs"] > 0).all()
    predicted = [c for c in table.columns if c.startswith("predicted_")]
    assert {"predicted_extent_total", "predicted_opacity_total"} <= set(predicted)
    assert np.isfinite(table[predicted].to_numpy()).all()  # fitted on the run's calibration
    for image_id in table["image_id"]:
        overlay_png = plt_image(out / "images" / f"{image_id}_overlay.png")
        assert overlay_png.shape[:2] == (32, 32)
        assert np.abs(overlay_png[..., 0] - overlay_png[..., 2]).max() > 0.05  # coloured map
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["preprocess"]["size"] == 32 and provenance["preprocess"]["labels_csv"] is None
    # every chosen setting (detection and each RALO total's, stargan's included) was decoded
    for s in provenance["settings"].values():
        decoded = out / "counterfactuals" / s["method"] / scale_name(s["scale"]) / "diff.npy"
        assert np.abs(np.load(decoded)).sum() > 0, s


def plt_image(path: Path) -> np.ndarray:
    import matplotlib.image

    return matplotlib.image.imread(path)
