"""datasets.X.apply_model: Y planned by dry runs: X is scored by Y's models and trains none;
a setting that cannot work stops the plan with a message naming it."""

from __future__ import annotations

import re

import pytest
from workflow_helpers import overlay, snakemake

UNET = "results/models/rsna/diffusion/unet/diffusion_pytorch_model.safetensors"
CLASSIFIER = "results/models/rsna/classifier/model.safetensors"
TRAINING = ("train_diffusion", "train_classifier", "train_stargan", "train_dcgan")


def planned(workdir, configs=()) -> list[dict]:
    """The jobs of a dry run: rule, input and output paths, wildcards."""
    out = snakemake(workdir, "--dry-run", configs=configs).stdout
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:\n)", out)[1:]:
        job = {"rule": re.match(r"(?:local)?rule (\w+):", block).group(1)}
        for key in ("input", "output", "wildcards"):
            found = re.search(rf"^    {key}: (.*)$", block, flags=re.M)
            job[key] = found.group(1).split(", ") if found else []
        job["wildcards"] = dict(w.split("=", 1) for w in job["wildcards"])
        jobs.append(job)
    return jobs


def of(jobs, rule, **wildcards) -> list[dict]:
    return [
        j
        for j in jobs
        if j["rule"] == rule and all(j["wildcards"].get(k) == v for k, v in wildcards.items())
    ]


def test_scored_data_set_plans_no_training_and_reads_the_models_of_its_apply_model(tmp_path):
    jobs = planned(tmp_path)
    ralo = [j for j in jobs if j["wildcards"].get("dataset") == "ralo"]
    assert not [j for j in ralo if j["rule"] in TRAINING]
    assert not any("results/models/ralo" in p for j in jobs for p in j["input"] + j["output"])
    assert len(of(jobs, "train_diffusion")) == len(of(jobs, "train_classifier")) == 1

    (invert,) = of(jobs, "invert", dataset="ralo")
    assert UNET in invert["input"] and "results/data/ralo/images.npy" in invert["input"]
    assert "results/splits/ralo/split.parquet" in invert["input"]
    counterfactuals = {
        j["wildcards"]["method"]: j for j in of(jobs, "counterfactual", dataset="ralo")
    }
    assert set(counterfactuals) == {"cg", "msr"}  # its own guidance_scales
    assert {UNET, CLASSIFIER, "results/latents/ralo/latents.npy"} <= set(
        counterfactuals["cg"]["input"]
    )
    # msr's first pass: the cg job of this data set, not the model data set's
    assert "results/counterfactuals/ralo/cg/10/diff.npy" in counterfactuals["msr"]["input"]
    (evaluate,) = of(jobs, "evaluate", dataset="ralo")
    assert CLASSIFIER in evaluate["input"]
    assert "results/counterfactuals/ralo/msr/3/scores.parquet" in evaluate["input"]
    assert of(jobs, "evaluation_figures", dataset="ralo")
    (summary,) = of(jobs, "run_summary")
    assert "results/metrics/ralo/counterfactual/summary.parquet" in summary["input"]
    for rule in ("phantoms", "phantom_contact_sheet", "preprocess", "split"):
        assert len(of(jobs, rule, dataset="ralo")) == 1


def test_scored_data_set_takes_the_model_data_sets_sections_under_its_own(tmp_path):
    """A scored data set without guidance_scales runs its model data set's methods and
    scales, msr's first pass included (counterfactual.first_pass: the smoke rsna's cfg/3),
    each on its own latents; stargan translates with the model data set's generator."""
    other = {
        "layout": "ralo",
        "source": "phantoms",
        "apply_model": "rsna",
        "preprocess": {"severity_csv": "ralo_severity.csv", "classes_from_severity": True},
        "split": {"names": ["calibration", "test"], "fractions": [0.5, 0.5]},
    }
    cfg = overlay(tmp_path / "o.yaml", {"datasets": {"other": other}})
    jobs = planned(tmp_path, (cfg,))
    counterfactuals = {
        j["wildcards"]["method"]: j for j in of(jobs, "counterfactual", dataset="other")
    }
    methods = {j["wildcards"]["method"] for j in of(jobs, "counterfactual", dataset="rsna")}
    assert set(counterfactuals) == methods == {"cfg", "cg", "renoise", "msr", "thor", "stargan"}
    assert "results/counterfactuals/other/cfg/3/diff.npy" in counterfactuals["msr"]["input"]
    assert "results/latents/other/latents.npy" in counterfactuals["cfg"]["input"]
    generator = "results/models/rsna/stargan/generator.safetensors"
    assert generator in counterfactuals["stargan"]["input"]
    assert not [j for j in jobs if j["rule"] in TRAINING and j["wildcards"]["dataset"] == "other"]


@pytest.mark.parametrize(
    "ralo, message",
    [
        ({"apply_model": "nope"}, "datasets.ralo.apply_model: nope: there is no data set 'nope'"),
        ({"apply_model": "covidqu"}, "datasets.covidqu has no diffusion section"),
        ({"diffusion": {"max_steps": 5}}, "has its own diffusion section: remove it"),
        ({"classifier": {"max_steps": 5}}, "has its own classifier section"),
        ({"preprocess": {"size": 16}}, "preprocess.size is 16 but rsna's model takes 32x32"),
        (
            {"counterfactual": {"target_class": "Healthy"}},
            "target_class 'Healthy' is not one of the classes",
        ),
    ],
)
def test_an_apply_model_that_cannot_work_is_named(tmp_path, ralo, message):
    cfg = {"datasets": {"ralo": ralo}}
    if "target_class" in str(ralo):  # the model's classes, typed on its data set
        cfg["datasets"]["rsna"] = {"split": {"classes": ["Normal", "Lung Opacity"]}}
    proc = snakemake(
        tmp_path, "--dry-run", configs=(overlay(tmp_path / "c.yaml", cfg),), check=False
    )
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]
