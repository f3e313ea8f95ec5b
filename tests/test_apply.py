"""cxrgen apply without a run: the preprocessing it repeats and its clear errors.

The end-to-end apply on a finished run is in tests/test_workflow_smoke.py (it needs the
smoke workflow's models and tables)."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.data import get_testdata_file

from cxrgen import io
from cxrgen.apply import Run, apply, chosen_settings, preprocess_config
from cxrgen.cli import main
from cxrgen.data.classes import write_classes
from cxrgen.errors import ConfigError, DataError


def fake_run(root: Path, preprocess: dict | None) -> Path:
    """RESULTS/models/x with a diffusion provenance (no weights: the errors come first)."""
    model = root / "results" / "models" / "x"
    (model / "diffusion").mkdir(parents=True)
    io.write_json(
        model / "diffusion" / "provenance.json",
        {"stage": "train_diffusion", "preprocess": preprocess},
    )
    write_classes(model / "diffusion" / "classes.json", ["Lung Opacity", "Normal"])
    return model


def test_the_training_store_preprocessing_is_repeated_without_its_labels(tmp_path):
    saved = {"size": 48, "dtype": "uint8", "aspect": "crop", "labels_csv": "labels.csv",
             "class_info_csv": "info.csv", "severity_csv": "ralo.csv", "ground_truth": "gt",
             "classes": ["Normal", "Lung Opacity"], "allow_colour": "luminance",
             "unknown_future_key": 1}  # fmt: skip
    cfg = preprocess_config(Run(fake_run(tmp_path, saved)))
    assert (cfg.size, cfg.dtype, cfg.aspect, cfg.allow_colour) == (48, "uint8", "crop",
                                                                   "luminance")  # fmt: skip
    assert cfg.labels_csv is cfg.class_info_csv is cfg.severity_csv is cfg.ground_truth is None
    assert cfg.classes is None


def test_run_folders_are_found_around_the_model_folder(tmp_path):
    run = Run(tmp_path / "results" / "models" / "rsna")
    assert run.store == tmp_path / "results" / "data" / "rsna"
    assert run.metrics == tmp_path / "results" / "metrics" / "rsna" / "counterfactual"
    assert run.counterfactuals == tmp_path / "results" / "counterfactuals" / "rsna"


def test_a_folder_without_a_model_is_refused_by_name(tmp_path, capfd):
    code = main(["apply", "--model-dir", str(tmp_path / "nothing"), "--input", str(tmp_path),
                 "--output", str(tmp_path / "out")])  # fmt: skip
    assert code == 2
    err = capfd.readouterr().err
    assert "is no model folder" in err and "nothing" in err


def test_a_model_without_its_preprocessing_record_is_refused(tmp_path):
    model = fake_run(tmp_path, None)
    with pytest.raises(ConfigError, match="does not record the preprocessing"):
        preprocess_config(Run(model))


def test_no_chosen_setting_and_no_method_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="--method"):
        chosen_settings(Run(fake_run(tmp_path, {"size": 32})), None, None)
    given = chosen_settings(Run(tmp_path / "results" / "models" / "x"), "cfg", 3.0)
    assert (given["detection"].method, given["detection"].scale) == ("cfg", 3.0)


@pytest.mark.parametrize("kind", ["empty", "missing", "junk"])
def test_an_input_without_usable_images_names_itself(tmp_path, kind):
    model = fake_run(tmp_path, {"size": 32})
    source = tmp_path / "input"
    if kind != "missing":
        source.mkdir()
    if kind == "junk":
        (source / "a.dcm").write_bytes(b"not a dicom file")
    with pytest.raises(DataError, match="input") as err:
        apply(model, source, tmp_path / "out", method="cfg", scale=1.0, progress=False)
    assert str(source) in str(err.value)
    if kind == "junk":  # the file and why it was refused
        assert "a.dcm" in str(err.value) and "DICOM" in str(err.value)


def test_the_workflow_plans_one_apply_job_per_named_input(tmp_path):
    from workflow_helpers import overlay, planned_jobs, snakemake

    images = tmp_path / "new_images"
    images.mkdir()
    cfg = overlay(tmp_path / "apply.yaml", {"apply": {"ward": {"model": "rsna",
                                                               "input": str(images)}}})  # fmt: skip
    jobs = planned_jobs(tmp_path / "run", "results/apply/ward/scores.parquet", configs=(cfg,))
    assert jobs["apply"] == 1 and jobs["evaluate"] == 1  # after the run's own choices
    bad = overlay(tmp_path / "bad.yaml", {"apply": {"ward": {"model": "covidqu",
                                                             "input": str(images)}}})  # fmt: skip
    proc = snakemake(tmp_path / "run", "--dry-run", configs=(bad,), check=False)
    assert proc.returncode != 0
    assert "apply.ward.model: 'covidqu' is not a data set that trains a diffusion model" in (
        proc.stdout + proc.stderr
    )


def test_other_bit_depths_and_photometry_are_converted_colour_is_refused(tmp_path):
    # a uint8 model; inputs: a 16-bit MR, the same pixels as MONOCHROME1, an RGB file
    model = fake_run(tmp_path, {"size": 32, "dtype": "uint8"})
    source = tmp_path / "input"
    source.mkdir()
    mr = Path(get_testdata_file("MR_small.dcm"))
    shutil.copy(mr, source / "mr.dcm")
    shutil.copy(mr.parent / "SC_rgb_rle.dcm", source / "rgb.dcm")
    inverted = pydicom.dcmread(mr)
    inverted.PhotometricInterpretation = "MONOCHROME1"
    inverted.SOPInstanceUID = inverted.SOPInstanceUID + ".1"
    inverted.save_as(source / "mr_monochrome1.dcm")
    out = tmp_path / "out"
    with pytest.raises(DataError, match="no trained diffusion model"):  # preprocessing came first
        apply(model, source, out, method="cfg", scale=1.0, progress=False)
    rejected = pd.read_csv(out / "rejected.csv")
    assert dict(zip(rejected.file, rejected.reason_code, strict=True)) == {"rgb.dcm": "colour"}
    index = pd.read_parquet(out / "store" / "index.parquet").set_index("file")
    images = np.load(out / "store" / "images.npy")
    assert images.dtype == np.uint8 and images.shape == (2, 32, 32)
    assert index.loc["mr.dcm", "bits_stored"] == 16
    plain = images[index.loc["mr.dcm", "row"]].astype(int)
    mono1 = images[index.loc["mr_monochrome1.dcm", "row"]].astype(int)
    assert plain.std() > 20 and np.abs(plain + mono1 - 255).max() <= 1  # inverted, not refused
