"""Phantom data sets: layout, file formats, determinism, exactness of the ground truth."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from cxrgen.config import from_mapping
from cxrgen.data.intensity import to_unit_interval
from cxrgen.data.store import RALO_COLUMNS as SCORE_COLUMNS
from cxrgen.errors import ConfigError
from cxrgen.phantoms import (
    CovidPhantomConfig,
    PhantomConfig,
    contact_sheet,
    make_covidqu_phantoms,
    make_ralo_phantoms,
    make_rsna_phantoms,
    ralo_scores,
    read_ground_truth,
)
from cxrgen.phantoms.anatomy import sample_anatomy
from cxrgen.phantoms.dicom_writer import SYNTAXES
from cxrgen.phantoms.lesions import sample_lesion_spec
from cxrgen.phantoms.scene import render_image, sample_setup

ARTIFACTS = Path(__file__).resolve().parents[1] / "results" / "test-artifacts"
CLASSES = {"Normal", "Lung Opacity", "No Lung Opacity / Not Normal"}
SMALL = PhantomConfig(
    seed=3, n_patients=24, min_size=64, max_size=96, frac_follow_up=0.5, n_corrupt=5
)


@pytest.fixture(scope="module")
def rsna(tmp_path_factory):
    out = tmp_path_factory.mktemp("rsna")
    manifest = make_rsna_phantoms(out, SMALL, progress=False)
    return out, manifest


@pytest.fixture(scope="module")
def valid(rsna):
    out, manifest = rsna
    return manifest[~manifest["corrupt"]].reset_index(drop=True)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_config_checks_and_yaml_mapping():
    with pytest.raises(ConfigError, match="frac_normal"):
        PhantomConfig(frac_normal=0.8, frac_opacity=0.5)
    with pytest.raises(ConfigError, match="transfer_syntaxes"):
        PhantomConfig(transfer_syntaxes=("jpeg_ls",), transfer_syntax_weights=(1.0,))
    with pytest.raises(ConfigError, match="min_size"):
        PhantomConfig(min_size=300, max_size=200)
    with pytest.raises(ConfigError, match="size"):
        CovidPhantomConfig(size=8)
    cfg = from_mapping(PhantomConfig, {"bits_stored": [8, 16], "n_patients": 5})
    assert cfg.bits_stored == (8, 16) and cfg.n_patients == 5


def test_csv_formats_and_label_consistency(rsna, valid):
    out, _ = rsna
    assert (out / "stage_2_train_labels.csv").read_text().splitlines()[0] == (
        "patientId,x,y,width,height,Target"
    )
    assert (out / "stage_2_detailed_class_info.csv").read_text().splitlines()[0] == (
        "patientId,class"
    )
    labels = pd.read_csv(out / "stage_2_train_labels.csv")
    info = pd.read_csv(out / "stage_2_detailed_class_info.csv")
    assert len(labels) == len(info)
    assert (labels["patientId"].to_numpy() == info["patientId"].to_numpy()).all()
    assert set(info["class"]) <= CLASSES
    box_cols = ["x", "y", "width", "height"]
    pos, neg = labels[labels["Target"] == 1], labels[labels["Target"] == 0]
    assert pos[box_cols].notna().all().all() and neg[box_cols].isna().all().all()
    assert (pos["width"] > 0).all() and (pos["height"] > 0).all()
    assert (info.loc[labels["Target"] == 1, "class"] == "Lung Opacity").all()
    assert (info.loc[labels["Target"] == 0, "class"] != "Lung Opacity").all()
    assert not neg["patientId"].duplicated().any()  # one row per image without boxes
    assert set(labels["patientId"]) == set(valid["image_id"])
    assert set(info["class"]) == CLASSES
    sev = pd.read_csv(out / "ralo_severity.csv")
    assert list(sev.columns) == ["patientId", *SCORE_COLUMNS]
    assert sorted(sev["patientId"]) == sorted(valid["image_id"])
    n_rows = labels.groupby("patientId").size()
    assert (n_rows.loc[valid["image_id"]].to_numpy() == np.maximum(valid["n_boxes"], 1)).all()


def test_archive_mix_covers_every_encoding(rsna, valid):
    out, _ = rsna
    seen = {"ts": set(), "pi": set(), "bits": set(), "win": 0, "rescale": 0, "shape": set()}
    for f in valid["file"]:
        ds = pydicom.dcmread(out / f, stop_before_pixels=True)
        seen["ts"].add(ds.file_meta.TransferSyntaxUID)
        seen["pi"].add(ds.PhotometricInterpretation)
        seen["bits"].add((int(ds.BitsStored), int(ds.BitsAllocated)))
        seen["win"] += "WindowCenter" in ds
        seen["rescale"] += "RescaleSlope" in ds
        seen["shape"].add(ds.Rows == ds.Columns)
        assert ds.Modality in ("CR", "DX") and ds.BodyPartExamined == "CHEST"
        assert ds.ViewPosition in ("PA", "AP")
        assert ds.SOPClassUID in ("1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1")
        if ds.file_meta.TransferSyntaxUID == SYNTAXES["jpeg_baseline"]:
            assert ds.BitsStored == 8 and ds.PhotometricInterpretation == "MONOCHROME2"
            assert ds.LossyImageCompression == "01"
    assert seen["ts"] == set(SYNTAXES.values())
    assert seen["pi"] == {"MONOCHROME1", "MONOCHROME2"}
    assert seen["bits"] == {(8, 8), (12, 16), (16, 16)}
    assert seen["win"] >= 1 and seen["rescale"] >= 1
    assert False in seen["shape"]  # non-square images


def test_round_trip_reproduces_the_drawn_image(rsna, valid):
    out, _ = rsna
    for _, row in valid.iterrows():
        ds = pydicom.dcmread(out / row["file"])
        unit = to_unit_interval(ds, ds.pixel_array)
        gt = read_ground_truth(out / row["ground_truth"])
        assert unit.shape == gt["image"].shape == (row["rows"], row["cols"])
        assert gt["image"].dtype == gt["healthy"].dtype == np.float32
        assert gt["lesion"].dtype == gt["lungs"].dtype == np.uint8
        outside = gt["lesion"] == 0
        if row["lossy"]:
            assert np.abs(unit - gt["image"]).mean() < 0.01
        else:
            assert np.array_equal(unit, gt["image"])
            assert np.array_equal(unit[outside], gt["healthy"][outside])
        assert np.array_equal(gt["image"][outside], gt["healthy"][outside])


def test_masks_scores_and_boxes_agree_with_the_drawing(rsna, valid):
    out, _ = rsna
    labels = pd.read_csv(out / "stage_2_train_labels.csv")
    sev = pd.read_csv(out / "ralo_severity.csv").set_index("patientId")
    for _, row in valid.iterrows():
        gt = read_ground_truth(out / row["ground_truth"])
        lesion, lungs = gt["lesion"].astype(bool), gt["lungs"]
        assert set(np.unique(lungs)) == {0, 1, 2}
        assert not (lesion & (lungs == 0)).any()
        cols = np.arange(lungs.shape[1])
        assert cols[(lungs == 1).any(axis=0)].mean() < cols[(lungs == 2).any(axis=0)].mean()
        scores = ralo_scores(gt["image"], gt["healthy"], gt["lesion"], lungs)
        assert scores == {c: int(sev.loc[row["image_id"], c]) for c in SCORE_COLUMNS}
        assert scores == {c: int(row[c]) for c in SCORE_COLUMNS}
        opacity = row["class_name"] == "Lung Opacity"
        assert lesion.any() == opacity == (scores["extent_total"] > 0)
        if not opacity:
            continue
        assert (gt["image"][lesion] - gt["healthy"][lesion]).mean() > 0.005
        boxes = labels[labels["patientId"] == row["image_id"]]
        assert len(boxes) == row["n_boxes"] >= 1
        covered = np.zeros_like(lesion)
        for _, b in boxes.iterrows():
            x, y, w, h = (int(b[k]) for k in ("x", "y", "width", "height"))
            assert x >= 0 and y >= 0 and x + w <= row["cols"] and y + h <= row["rows"]
            covered[y : y + h, x : x + w] = True
        assert covered[lesion].all()


def test_severity_scores_cover_the_range():
    rng = np.random.default_rng(0)
    anatomy = sample_anatomy(rng)
    setup = sample_setup(rng, (96, 96), ap_view=False)
    extents, opacities = set(), set()
    for level in (1, 2, 3, 4):
        for pattern in ("patchy", "peripheral", "lobar"):
            spec = sample_lesion_spec(rng, pattern, 1.0, (level,), (level,))
            r = render_image(anatomy, setup, spec)
            s = ralo_scores(r.image, r.healthy, r.lesion, r.lungs)
            extents |= {s["extent_right"], s["extent_left"]}
            opacities |= {s["opacity_right"], s["opacity_left"]}
    assert extents == {1, 2, 3, 4} and opacities == {1, 2, 3, 4}


def test_ralo_thresholds_on_a_hand_made_case():
    lungs = np.zeros((10, 20), np.uint8)
    lungs[:, :10], lungs[:, 10:] = 1, 2
    healthy = np.zeros((10, 20), np.float32)
    lesion = np.zeros((10, 20), np.uint8)
    lesion[:3, :10] = 1  # 30 % of the right lung
    image = healthy + 0.2 * lesion
    s = ralo_scores(image, healthy, lesion, lungs)
    assert (s["extent_right"], s["opacity_right"], s["extent_left"], s["opacity_left"]) == (
        2,
        4,
        0,
        0,
    )
    assert s["extent_total"] == 2 and s["opacity_total"] == 4


def test_follow_ups_share_the_patient(rsna, valid):
    out, _ = rsna
    per_patient = valid.groupby("patient_id")["image_id"].nunique()
    assert (per_patient >= 2).any() and per_patient.max() <= SMALL.max_images_per_patient
    pid = per_patient.idxmax()
    rows = valid[valid["patient_id"] == pid]
    headers = [pydicom.dcmread(out / f, stop_before_pixels=True) for f in rows["file"]]
    assert {ds.PatientID for ds in headers} == {pid}
    assert len({ds.SOPInstanceUID for ds in headers}) == len(headers)
    assert {ds.PatientName for ds in headers} == {headers[0].PatientName}
    assert all(ds.SOPInstanceUID.startswith("2.25.") for ds in headers)
    assert all(UID(ds.SOPInstanceUID).is_valid for ds in headers)
    assert pid not in set(valid["image_id"])


def test_junk_files_fail_the_way_they_should(rsna):
    out, manifest = rsna
    junk = manifest[manifest["corrupt"]]
    assert len(junk) == SMALL.n_corrupt
    assert set(junk["corrupt_kind"]) == {"truncated", "no_pixel_data", "rgb", "not_dicom", "empty"}
    labels = pd.read_csv(out / "stage_2_train_labels.csv")
    assert not set(junk["image_id"]) & set(labels["patientId"])
    for _, row in junk.iterrows():
        path = out / row["file"]
        assert path.exists()
        kind = row["corrupt_kind"]
        if kind in ("not_dicom", "empty"):
            with pytest.raises(InvalidDicomError):
                pydicom.dcmread(path)
        elif kind == "truncated":
            with pytest.raises(Exception):  # noqa: B017 - any failure to decode is right
                pydicom.dcmread(path).pixel_array  # noqa: B018
        elif kind == "no_pixel_data":
            assert "PixelData" not in pydicom.dcmread(path)
        else:
            ds = pydicom.dcmread(path)
            assert ds.SamplesPerPixel == 3 and ds.pixel_array.shape[-1] == 3


def test_fake_phi_is_in_the_headers(rsna, valid):
    out, _ = rsna
    phi = json.loads((out / "phi_values.json").read_text())
    assert set(phi["images"]) == set(valid["image_id"])
    for _, row in valid.head(8).iterrows():
        ds = pydicom.dcmread(out / row["file"], stop_before_pixels=True)
        raw = (out / row["file"]).read_bytes()
        for key, value in phi["images"][row["image_id"]].items():
            assert str(ds[key].value) == value
            assert value.encode() in raw
        assert str(ds.PatientName).startswith("PHANTOM^")
    manifest_text = pd.read_parquet(out / "manifest.parquet").to_csv()
    assert not any(v in manifest_text for v in phi["values"])


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    cfg = PhantomConfig(seed=11, n_patients=6, min_size=48, max_size=64, n_corrupt=5)
    make_rsna_phantoms(tmp_path / "a", cfg, progress=False)
    make_rsna_phantoms(tmp_path / "b", cfg, progress=False)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a == b and len(a) > 20
    # the smoke size still draws recognisable lungs in every image
    for name in a:
        if name.startswith("ground_truth/"):
            lungs = read_ground_truth(tmp_path / "a" / name)["lungs"]
            assert 0.08 < (lungs > 0).mean() < 0.6
    make_rsna_phantoms(tmp_path / "a", dataclasses.replace(cfg, seed=12), progress=False)
    c = _files(tmp_path / "a")
    assert not {k for k in c if k.endswith(".dcm")} & {k for k in a if k.endswith(".dcm")}
    assert c["stage_2_train_labels.csv"] != a["stage_2_train_labels.csv"]
    assert len([k for k in c if k.endswith(".npz")]) == len(
        pd.read_csv(tmp_path / "a" / "ralo_severity.csv")
    )  # earlier run's files were removed


def test_ralo_layout_is_the_rsna_kind_of_images_with_only_a_severity_csv(tmp_path):
    cfg = PhantomConfig(seed=11, n_patients=6, min_size=48, max_size=64, n_corrupt=1)
    make_rsna_phantoms(tmp_path / "rsna", cfg, progress=False)
    manifest = make_ralo_phantoms(tmp_path / "ralo", cfg, progress=False)
    rsna, ralo = _files(tmp_path / "rsna"), _files(tmp_path / "ralo")
    assert "stage_2_train_labels.csv" not in ralo  # no class labels of any kind
    assert "stage_2_detailed_class_info.csv" not in ralo
    assert ralo["ralo_severity.csv"] == rsna["ralo_severity.csv"]
    images = {k.removeprefix("images/"): v for k, v in ralo.items() if k.startswith("images/")}
    prefix = "stage_2_train_images/"
    assert images == {k.removeprefix(prefix): v for k, v in rsna.items() if k.startswith(prefix)}
    assert manifest["file"].str.startswith("images/").all()
    assert {k for k in ralo if k.startswith("ground_truth/")} == {
        k for k in rsna if k.startswith("ground_truth/")
    }


def test_covidqu_layout_pairs_and_determinism(tmp_path):
    cfg = CovidPhantomConfig(
        seed=2, size=64, n_train_per_class=3, n_val_per_class=1, n_test_per_class=1
    )
    df = make_covidqu_phantoms(tmp_path / "a", cfg, progress=False)
    assert len(df) == 15
    for split in ("Train", "Val", "Test"):
        for cls in ("COVID-19", "Non-COVID", "Normal"):
            images = sorted(p.name for p in (tmp_path / "a" / split / cls / "images").iterdir())
            masks = sorted(p.name for p in (tmp_path / "a" / split / cls / "lung masks").iterdir())
            assert images == masks and len(images) == cfg.count(split)
    for _, row in df.iterrows():
        img = Image.open(tmp_path / "a" / row["image"])
        mask = np.asarray(Image.open(tmp_path / "a" / row["mask"]))
        assert img.mode == "L" and img.size == (64, 64)
        assert set(np.unique(mask)) == {0, 255}
        assert (row["extent_total"] > 0) == (row["class_name"] != "Normal")
    assert len(set(df["name"])) == len(df)
    make_covidqu_phantoms(tmp_path / "b", cfg, progress=False)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    other = dataclasses.replace(cfg, seed=3)
    make_covidqu_phantoms(tmp_path / "c", other, progress=False)
    a, c = _files(tmp_path / "a"), _files(tmp_path / "c")
    assert a.keys() == c.keys() and a != c


def test_contact_sheets(tmp_path):
    """Renders sheets of a default-size set for people to look at (results/test-artifacts/)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    rsna_dir = tmp_path / "rsna"
    make_rsna_phantoms(rsna_dir, PhantomConfig(seed=1, n_patients=24), progress=False)
    sheet = ARTIFACTS / "phantom_contact_sheet.png"
    contact_sheet(rsna_dir, sheet, n=24)
    assert Image.open(sheet).size[0] > 800
    covid_dir = tmp_path / "covid"
    make_covidqu_phantoms(
        covid_dir,
        CovidPhantomConfig(seed=1, n_train_per_class=4, n_val_per_class=0, n_test_per_class=0),
        progress=False,
    )
    covid_sheet = ARTIFACTS / "phantom_contact_sheet_covidqu.png"
    contact_sheet(covid_dir, covid_sheet, n=12)
    assert Image.open(covid_sheet).size[0] > 800
