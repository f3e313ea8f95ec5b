"""Every data stage runs from the `cxrgen` command line, with flags generated from its config."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from cxrgen.cli import build_parser, main


def cxrgen(*args):
    return subprocess.run(
        [sys.executable, "-m", "cxrgen.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_ralo_phantoms_are_preprocessed_with_classes_read_off_their_scores(tmp_path):
    raw, store = tmp_path / "raw", tmp_path / "store"
    phantoms = ["--n-patients", "8", "--max-images-per-patient", "1", "--n-corrupt", "0"]
    args = ["-q", "phantoms", "ralo", "--output", str(raw), *phantoms]
    assert main([*args, "--min-size", "48", "--max-size", "64"]) == 0
    assert (raw / "ralo_severity.csv").is_file() and not (raw / "stage_2_train_labels.csv").exists()
    severity = ["--severity-csv", "ralo_severity.csv", "--classes-from-severity"]
    args = ["-q", "preprocess", "--input", str(raw), "--output", str(store), "--size", "16"]
    assert main([*args, *severity]) == 0
    index = pd.read_parquet(store / "index.parquet")
    assert len(index) == 8 and set(index["class_name"]) <= {"Normal", "Lung Opacity"}
    scored = index[["extent_total", "opacity_total"]].gt(0).any(axis=1)
    assert (scored == (index["class_name"] == "Lung Opacity")).all()


def test_phantoms_preprocess_split_from_the_command_line(tmp_path):
    raw, store, split = tmp_path / "raw", tmp_path / "store", tmp_path / "split"
    assert (
        main(
            [
                "-q",
                "phantoms",
                "rsna",
                "--output",
                str(raw),
                "--n-patients",
                "24",
                "--min-size",
                "48",
                "--max-size",
                "64",
                "--n-corrupt",
                "1",
            ]
        )
        == 0
    )
    manifest = pd.read_parquet(raw / "manifest.parquet")
    assert manifest["corrupt"].sum() == 1
    assert manifest.loc[~manifest["corrupt"], "patient_id"].nunique() == 24
    assert (
        main(
            [
                "-q",
                "preprocess",
                "--input",
                str(raw),
                "--output",
                str(store),
                "--size",
                "16",
                "--labels-csv",
                "stage_2_train_labels.csv",
                "--class-info-csv",
                "stage_2_detailed_class_info.csv",
            ]
        )
        == 0
    )
    images = np.load(store / "images.npy")
    index = pd.read_parquet(store / "index.parquet")
    assert images.shape == (len(index), 16, 16)
    assert len(index) == int((~manifest["corrupt"]).sum())
    assert (
        main(
            [
                "-q",
                "split",
                "--store",
                str(store),
                "--output",
                str(split),
                "--seed",
                "3",
                "--fractions",
                "0.5",
                "0.25",
                "0.25",
            ]
        )
        == 0
    )
    prov = json.loads((split / "provenance.json").read_text())
    assert prov["config"]["seed"] == 3 and prov["config"]["fractions"] == [0.5, 0.25, 0.25]


def test_errors_exit_2_with_the_message(tmp_path):
    proc = cxrgen("preprocess", "--input", tmp_path / "missing", "--output", tmp_path / "o")
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    proc = cxrgen("split", "--store", tmp_path, "--output", tmp_path / "o", "--fractions", "0.9")
    assert proc.returncode == 2 and "must be one" not in proc.stderr
    assert "fractions" in proc.stderr


def test_every_config_field_has_a_flag():
    import dataclasses

    from cxrgen.data.preprocess import PreprocessConfig

    parser = build_parser()
    args = parser.parse_args(
        ["preprocess", "--input", "a", "--output", "b", "--no-hash-patient-id"]
    )
    flags = {k[5:] for k in vars(args) if k.startswith("cfg__")}
    assert flags == {"hash_patient_id"}  # only what was given; defaults stay the dataclass's
    help_text = parser._subparsers._group_actions[0].choices["preprocess"].format_help()
    for field in dataclasses.fields(PreprocessConfig):
        assert "--" + field.name.replace("_", "-") in help_text


@pytest.mark.parametrize("bad", [["--size", "x"], ["--aspect"]])
def test_bad_flags_are_usage_errors(bad, tmp_path):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["preprocess", "--input", "a", "--output", "b", *bad])
    assert exc.value.code == 2


def test_training_and_gan_commands_exist_with_config_flags():
    parser = build_parser()
    choices = parser._subparsers._group_actions[0].choices
    for command, flag in [
        ("train-diffusion", "--label-dropout"),
        ("train-classifier", "--valid-bins"),
        ("train-stargan", "--lambda-ds"),
        ("train-dcgan", "--embed-dim"),
        ("generate-synthetic", "--num-outs-per-domain"),
        ("gan-metrics", "--metrics-optional"),
    ]:
        assert flag in choices[command].format_help(), (command, flag)


def test_train_diffusion_from_the_command_line(tmp_path):
    from synthetic_store import make_store

    store, split = make_store(tmp_path)
    out = tmp_path / "model"
    assert (
        main(
            [
                "-q",
                "train-diffusion",
                "--store",
                str(store),
                "--split",
                str(split),
                "--output",
                str(out),
                "--max-steps",
                "2",
                "--batch-size",
                "4",
                "--block-out-channels",
                "8",
                "16",
                "--layers-per-block",
                "1",
                "--attention-resolutions",
                "--no-mid-attention",
                "--norm-num-groups",
                "4",
                "--num-train-timesteps",
                "10",
                "--n-sample-per-class",
                "1",
                "--sample-steps",
                "2",
                "--checkpoint-every",
                "1",
                "--warmup-steps",
                "0",
                "--attention-head-dim",
                "8",
            ]
        )
        == 0
    )
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").exists()
