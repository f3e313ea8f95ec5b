"""The preprocessing stage: geometry, determinism, bookkeeping, PHI, labels, errors, layouts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, RLELossless
from test_dicom_decoding import full_path, grey_levels, smooth_image, write_dicom, xray_like

from cxrgen.config import from_mapping
from cxrgen.data.classes import RSNA_CLASSES
from cxrgen.data.geometry import SquareGeometry, dequantize, quantize
from cxrgen.data.intensity import unit_to_stored
from cxrgen.data.preprocess import PreprocessConfig, preprocess
from cxrgen.errors import ConfigError, DataError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def run(src: Path, out: Path, threads: int = 1, **cfg):
    result = preprocess(src, out, PreprocessConfig(**cfg), threads=threads, progress=False)
    return (
        result,
        np.load(out / "images.npy"),
        pd.read_parquet(out / "index.parquet"),
        pd.read_parquet(out / "rejected.parquet"),
    )


# ---------------------------------------------------------------------- geometry


def test_pad_and_crop_keep_known_content():
    img = np.zeros((40, 80), np.float32)
    img[:, :40] = 1.0
    img[:, 40:] = 0.5
    pad = SquareGeometry.for_shape(img.shape, 80, "pad").apply(img)  # no resize
    assert pad.shape == (80, 80)
    assert (pad[:20] == 0).all() and (pad[60:] == 0).all()
    np.testing.assert_array_equal(pad[20:60], img)
    crop = SquareGeometry.for_shape(img.shape, 40, "crop").apply(img)
    np.testing.assert_array_equal(crop[:, :20], 1.0)
    np.testing.assert_array_equal(crop[:, 20:], 0.5)
    small = SquareGeometry.for_shape(img.shape, 20, "pad").apply(img)  # 80 -> 20
    np.testing.assert_allclose(small[6:14, 1:9], 1.0, atol=1e-3)  # Gaussian tails
    np.testing.assert_allclose(small[6:14, 11:19], 0.5, atol=1e-3)
    assert small[0].max() < 1e-3 and small[-1].max() < 1e-3
    odd = SquareGeometry(rows=3, cols=6, size=6, aspect="pad")
    assert odd.offset == (1, 0)  # the odd padding row goes after
    assert SquareGeometry(rows=7, cols=4, size=4, aspect="crop").offset == (-1, 0)


@pytest.mark.parametrize("aspect", ["pad", "crop"])
def test_boxes_follow_the_pixels(aspect):
    rows, cols, size = 120, 80, 40
    box = np.array([[30.0, 24.0, 20.0, 48.0]])  # x, y, w, h on the native grid
    img = np.zeros((rows, cols), np.float32)
    img[24:72, 30:50] = 1.0
    geom = SquareGeometry.for_shape(img.shape, size, aspect)
    out = geom.apply(img)
    x, y, w, h = geom.map_boxes(box)[0]
    ys, xs = np.nonzero(out > 0.5)
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == pytest.approx(
        (x, x + w, y, y + h), abs=1.0
    )
    expected = {
        "pad": [(30 + 20) / 3, 24 / 3, 20 / 3, 48 / 3],
        "crop": [30 / 2, (24 - 20) / 2, 20 / 2, 48 / 2],
    }[aspect]
    np.testing.assert_allclose([x, y, w, h], expected)
    gone = geom.map_boxes(np.array([[0.0, 0.0, 10.0, 10.0]]))  # cropped away entirely
    assert len(gone) == (0 if aspect == "crop" else 1)


def test_label_masks_resize_nearest_and_quantize_scales():
    lab = np.zeros((50, 30), np.uint8)
    lab[10:40, 5:15], lab[10:40, 15:25] = 1, 2
    out = SquareGeometry.for_shape(lab.shape, 25, "pad").apply_labels(lab)
    assert out.dtype == np.uint8 and set(np.unique(out)) == {0, 1, 2}
    x = np.array([0.0, 0.5, 1.0, 1.2, -0.1])
    assert quantize(x, "uint8").tolist() == [0, 128, 255, 255, 0]
    assert quantize(x, "uint16").tolist() == [0, 32768, 65535, 65535, 0]
    np.testing.assert_allclose(dequantize(quantize(x, "uint16")), np.clip(x, 0, 1), atol=1e-5)


# ---------------------------------------------------------------------- DICOM folders


@pytest.fixture(scope="module")
def dicom_tree(tmp_path_factory):
    """12 good DICOMs of mixed syntaxes / sizes in nested folders, plus junk."""
    src = tmp_path_factory.mktemp("tree")
    syntaxes = [None, RLELossless, JPEG2000Lossless]
    for i in range(12):
        rows, cols = 40 + 4 * i, 56 - 2 * i
        unit = smooth_image(rows, cols, seed=i)
        write_dicom(
            src / f"p{i % 5}" / f"img{i:02d}.dcm",
            unit_to_stored(unit, 12),
            bits_stored=12,
            PatientID=f"patient-{i % 5}",
            **({"syntax": syntaxes[i % 3]} if syntaxes[i % 3] else {}),
        )
    (src / "junk.dcm").write_text("not a DICOM file")
    (src / "notes.txt").write_text("skipped: documentation suffix")
    (src / ".hidden").write_text("skipped: hidden")
    (src / "p0" / "README").write_text("no suffix: tried as DICOM, rejected")
    return src


def test_deterministic_across_thread_counts_and_executors(dicom_tree, tmp_path):
    outs = []
    for threads, executor in ((1, "process"), (2, "process"), (2, "thread")):
        out = tmp_path / f"{threads}{executor}"
        run(dicom_tree, out, threads=threads, size=24, executor=executor)
        outs.append(out)
    for name in ("images.npy", "index.parquet", "rejected.parquet", "classes.json"):
        blobs = {(o / name).read_bytes() for o in outs}
        assert len(blobs) == 1, name


def test_every_input_in_exactly_one_table(dicom_tree, tmp_path):
    result, images, index, rejected = run(dicom_tree, tmp_path / "o", size=24)
    assert set(index.file).isdisjoint(rejected.file)
    assert set(index.file) | set(rejected.file) == {
        p.relative_to(dicom_tree).as_posix()
        for p in dicom_tree.rglob("*")
        if p.is_file() and p.name not in ("notes.txt", ".hidden")
    }
    assert dict(zip(rejected.file, rejected.reason_code, strict=True)) == {
        "junk.dcm": "not_dicom",
        "p0/README": "not_dicom",
    }
    assert result.n_stored == 12 and images.shape == (12, 24, 24) and images.dtype == np.uint16
    assert index.file.tolist() == sorted(index.file) and index.row.tolist() == list(range(12))
    assert index.patient_id.tolist() == [
        f"patient-{i % 5}" for i in sorted(range(12), key=lambda i: f"p{i % 5}/img{i:02d}")
    ]
    assert (index.label == -1).all() and index.class_name.isna().all()
    assert json.loads((tmp_path / "o" / "classes.json").read_text()) == {"names": [], "index": {}}
    prov = json.loads((tmp_path / "o" / "provenance.json").read_text())
    assert prov["stage"] == "preprocess" and prov["n_rejected"] == 2
    assert not list((tmp_path / "o").glob(".*"))  # no temporary files left
    first = index.iloc[0]
    unit = smooth_image(int(first.orig_rows), int(first.orig_cols), seed=int(first.image_id[3:]))
    geom = SquareGeometry.for_shape(unit.shape, 24, "pad")
    np.testing.assert_allclose(dequantize(images[0]), geom.apply(unit), atol=2e-4)
    assert run(dicom_tree, tmp_path / "u8", size=24, dtype="uint8")[1].dtype == np.uint8


def test_no_phi_in_any_output(tmp_path):
    phi = {
        "PatientName": "Zyxwvut^Qponmlkj",
        "PatientBirthDate": "19230405",
        "AccessionNumber": "ACC98765XYZ",
        "InstitutionName": "Saint Phantasm Infirmary",
        "ReferringPhysicianName": "Dr^Hemlockwood",
        "OtherPatientIDs": "OTHER-55521-ID",
        "StudyDate": "19991231",
        "InstitutionAddress": "42 Nowhere Lane",
    }
    for i in range(3):
        write_dicom(
            tmp_path / "in" / f"img{i}.dcm",
            unit_to_stored(smooth_image(seed=i), 12),
            bits_stored=12,
            PatientID="PID-SECRET-77",
            **phi,
        )
    write_dicom(
        tmp_path / "in" / "bad.dcm",
        np.zeros((4, 4, 3), np.uint8),
        bits_stored=8,
        photometric="RGB",
        PatientID="PID-SECRET-77",
        **phi,
    )
    (tmp_path / "in" / "bad.dcm").write_bytes((tmp_path / "in" / "bad.dcm").read_bytes()[:-20])
    for hashed in (False, True):
        out = tmp_path / f"out{hashed}"
        cfg = {"hash_patient_id": hashed, "patient_id_salt": "s3cret" if hashed else ""}
        _, _, index, rejected = run(tmp_path / "in", out, size=16, **cfg)
        assert len(index) == 3 and len(rejected) == 1
        blobs = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
        # parquet pages are compressed: search the decoded tables too
        blobs += b"".join(pd.read_parquet(p).to_json().encode() for p in out.glob("*.parquet"))
        for value in phi.values():
            for part in value.split("^"):
                assert part.encode() not in blobs, part
        assert (b"PID-SECRET-77" in blobs) is not hashed
        if hashed:
            assert index.patient_id.nunique() == 1 and len(index.patient_id[0]) == 16


# ---------------------------------------------------------------------- RSNA labels


@pytest.fixture()
def rsna(tmp_path):
    """Six RSNA-style DICOMs with the two CSVs and a severity CSV."""
    src = tmp_path / "rsna"
    classes = [
        "Normal",
        "Lung Opacity",
        "No Lung Opacity / Not Normal",
        "Lung Opacity",
        "Normal",
        "Normal",
    ]
    labels, info = [], []
    for i, cls in enumerate(classes):
        pid = f"id{i}"
        write_dicom(
            src / "stage_2_train_images" / f"{pid}.dcm",
            unit_to_stored(smooth_image(60, 40, seed=i), 8),
            bits_stored=8,
            PatientID=pid,
        )
        if cls == "Lung Opacity":
            labels += [[pid, 4.0, 6.0, 10.0, 12.0, 1], [pid, 20.0, 30.0, 8.0, 9.0, 1]]
            info += [[pid, cls]] * 2
        else:
            labels.append([pid, None, None, None, None, 0])
            info.append([pid, cls])
    pd.DataFrame(labels, columns=["patientId", "x", "y", "width", "height", "Target"]).to_csv(
        src / "stage_2_train_labels.csv", index=False
    )
    pd.DataFrame(info, columns=["patientId", "class"]).to_csv(
        src / "stage_2_detailed_class_info.csv", index=False
    )
    sev = pd.DataFrame(
        {
            "patientId": ["id1", "id3"],
            "extent_right": [2, 1],
            "extent_left": [1, 0],
            "opacity_right": [3, 1],
            "opacity_left": [2, 0],
            "extent_total": [3, 1],
            "opacity_total": [5, 1],
        }
    )
    sev.to_csv(src / "ralo.csv", index=False)
    return src


def test_rsna_labels_boxes_and_severity(rsna, tmp_path):
    cfg = dict(
        size=20,
        labels_csv="stage_2_train_labels.csv",
        severity_csv="ralo.csv",
        class_info_csv=str(rsna / "stage_2_detailed_class_info.csv"),
    )
    _, images, index, rejected = run(rsna, tmp_path / "o", **cfg)
    assert len(index) == 6 and rejected.empty
    classes = json.loads((tmp_path / "o" / "classes.json").read_text())
    assert classes["names"] == sorted(RSNA_CLASSES)
    assert classes["index"] == {n: i for i, n in enumerate(sorted(RSNA_CLASSES))}
    row = index.set_index("image_id")
    assert row.loc["id1", "class_name"] == "Lung Opacity" and row.loc["id1", "target"] == 1
    assert row.loc["id2", "label"] == classes["index"]["No Lung Opacity / Not Normal"]
    assert row.loc["id0", "n_boxes"] == 0 and len(row.loc["id0", "boxes"]) == 0
    boxes = np.stack(row.loc["id3", "boxes"])  # 60 x 40 padded to 60, scaled by 1/3
    np.testing.assert_allclose(boxes, [[(4 + 10) / 3, 2, 10 / 3, 4], [10, 10, 8 / 3, 3]])
    assert row.loc["id1", "opacity_total"] == 5 and np.isnan(row.loc["id0", "extent_left"])

    _, _, index, rejected = run(rsna, tmp_path / "o2", classes=["Normal", "Lung Opacity"], **cfg)
    assert json.loads((tmp_path / "o2" / "classes.json").read_text())["names"] == [
        "Normal",
        "Lung Opacity",
    ]
    assert rejected.reason_code.tolist() == ["excluded_class"]
    assert sorted(index.label) == [0, 0, 0, 1, 1]

    only_labels = dict(size=20, labels_csv="stage_2_train_labels.csv")
    _, _, index, _ = run(rsna, tmp_path / "o3", **only_labels)
    assert set(index.class_name) == {"No Opacity", "Lung Opacity"}


def test_label_problems_raise_clear_errors(rsna, tmp_path):
    labels_path = rsna / "stage_2_train_labels.csv"
    labels = pd.read_csv(labels_path)
    base = dict(size=16, labels_csv="stage_2_train_labels.csv")
    with pytest.raises(DataError, match="does not exist"):
        run(tmp_path / "nope", tmp_path / "o")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.csv").write_text("x\n")
    with pytest.raises(DataError, match="no image files"):
        run(tmp_path / "empty", tmp_path / "o")
    with pytest.raises(DataError, match="labels_csv file not found"):
        run(rsna, tmp_path / "o", size=16, labels_csv="missing.csv")
    labels.drop(columns=["Target", "width"]).to_csv(labels_path, index=False)
    with pytest.raises(
        DataError, match=r"stage_2_train_labels.csv lacks column\(s\) width, Target"
    ):
        run(rsna, tmp_path / "o", **base)
    extra = [labels.iloc[:1].assign(patientId=f"ghost-{k}") for k in range(7)]
    pd.concat([labels, *extra]).to_csv(labels_path, index=False)
    with pytest.raises(DataError, match=r"7 id\(s\) in labels CSV .* ghost-0, .*7 in all"):
        run(rsna, tmp_path / "o", **base)
    run(rsna, tmp_path / "o", allow_unmatched_labels=True, **base)
    labels.iloc[1:].to_csv(labels_path, index=False)  # id0 loses its label
    _, _, index, rejected = run(rsna, tmp_path / "o", **base)
    assert rejected[["file", "reason_code"]].values.tolist() == [
        ["stage_2_train_images/id0.dcm", "no_label"]
    ]
    labels.to_csv(labels_path, index=False)
    info = pd.read_csv(rsna / "stage_2_detailed_class_info.csv")
    info.loc[info.patientId == "id0", "class"] = "Lung Opacity"
    info.to_csv(rsna / "bad_info.csv", index=False)
    with pytest.raises(DataError, match=r"contradicts Target .* \(id0\)"):
        run(rsna, tmp_path / "o", class_info_csv="bad_info.csv", **base)
    pd.read_csv(rsna / "ralo.csv").drop(columns=["opacity_left"]).to_csv(rsna / "s.csv")
    with pytest.raises(DataError, match="s.csv lacks column.*opacity_left"):
        run(rsna, tmp_path / "o", severity_csv="s.csv", **base)


def test_ralo_layout_classes_come_from_the_severity_scores(tmp_path):
    """Images + one severity CSV, no class labels: Lung Opacity where a score is above 0,
    Normal where all are 0; an image without scores has no label."""
    src = tmp_path / "ralo"
    for i in range(4):
        pixels = unit_to_stored(smooth_image(40, 40, seed=i), 8)
        write_dicom(src / "images" / f"id{i}.dcm", pixels, bits_stored=8, PatientID=f"p{i}")
    scores = {"id0": [0, 0, 0, 0, 0, 0], "id1": [2, 0, 3, 0, 2, 3], "id2": [None] * 6}
    columns = ["extent_right", "extent_left", "opacity_right", "opacity_left"]
    pd.DataFrame(
        [[k, *v] for k, v in scores.items()],
        columns=["patientId", *columns, "extent_total", "opacity_total"],
    ).to_csv(src / "ralo.csv", index=False)  # id3 is not in it
    cfg = dict(size=20, severity_csv="ralo.csv", classes_from_severity=True)
    _, _, index, rejected = run(src, tmp_path / "o", classes=["Normal", "Lung Opacity"], **cfg)
    row = index.set_index("image_id")
    assert row.loc["id0", "class_name"] == "Normal" and row.loc["id0", "target"] == 0
    assert row.loc["id1", "class_name"] == "Lung Opacity" and row.loc["id1", "target"] == 1
    assert row.loc["id1", "label"] == 1 and row.loc["id1", "opacity_total"] == 3
    assert rejected.set_index("image_id").reason_code.to_dict() == {
        "id2": "no_label",
        "id3": "no_label",
    }
    assert rejected.reason.str.contains("has no severity score").all()
    names = json.loads((tmp_path / "o" / "classes.json").read_text())["names"]
    assert names == ["Normal", "Lung Opacity"]


def test_config_checks():
    with pytest.raises(ConfigError, match="classes_from_severity needs severity_csv"):
        PreprocessConfig(classes_from_severity=True)
    with pytest.raises(ConfigError, match="classes_from_severity needs severity_csv"):
        PreprocessConfig(classes_from_severity=True, severity_csv="s.csv", labels_csv="l.csv")
    with pytest.raises(ConfigError, match="dtype"):
        PreprocessConfig(dtype="float32")
    with pytest.raises(ConfigError, match="class_info_csv needs labels_csv"):
        PreprocessConfig(class_info_csv="c.csv")
    with pytest.raises(ConfigError, match="patient_id_salt"):
        PreprocessConfig(hash_patient_id=True)
    with pytest.raises(ConfigError, match="sise"):
        from_mapping(PreprocessConfig, {"sise": 3})
    cfg = from_mapping(PreprocessConfig, {"classes": ["Normal", "Lung Opacity"], "size": 32})
    assert cfg.classes == ("Normal", "Lung Opacity")


# ---------------------------------------------------------------------- ground truth, folders


def test_ground_truth_arrays_align_with_images(tmp_path):
    src = tmp_path / "in"
    (src / "gt").mkdir(parents=True)
    rows, cols = 64, 48
    yy, xx = np.mgrid[0:rows, 0:cols]
    for i in range(3):
        healthy = smooth_image(rows, cols, seed=i) * 0.6
        lesion = ((yy - 20 - 5 * i) ** 2 + (xx - 24) ** 2 < 64).astype(np.uint8)
        lungs = np.where(xx < cols // 2, 1, 2) * ((yy > 8) & (yy < 56))
        image = np.clip(healthy + 0.3 * lesion, 0, 1)
        write_dicom(src / f"im{i}.dcm", unit_to_stored(image, 16), bits_stored=16)
        np.savez(
            src / "gt" / f"im{i}.npz", healthy=healthy, lesion=lesion, lungs=lungs.astype(np.uint8)
        )
    write_dicom(src / "orphan.dcm", unit_to_stored(smooth_image(), 16), bits_stored=16)
    _, images, index, rejected = run(src, tmp_path / "o", size=32, ground_truth="gt")
    assert rejected.reason_code.tolist() == ["no_ground_truth"]
    out = tmp_path / "o"
    healthy = np.load(out / "healthy.npy")
    lesion, lungs = np.load(out / "lesion_masks.npy"), np.load(out / "lung_masks.npy")
    assert healthy.shape == lesion.shape == lungs.shape == images.shape == (3, 32, 32)
    assert healthy.dtype == np.uint16 and lesion.dtype == lungs.dtype == np.uint8
    assert set(np.unique(lungs)) == {0, 1, 2} and set(np.unique(lesion)) == {0, 1}
    for k in range(3):
        diff = dequantize(images[k]) - dequantize(healthy[k])
        near = np.zeros_like(lesion[k], bool)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                near |= np.roll(np.roll(lesion[k] > 0, dy, 0), dx, 1)
        assert np.abs(diff[~near]).max() < 1e-3  # zero away from the lesion, up to resize blur
        assert diff[lesion[k] > 0].mean() > 0.2
        assert lungs[k][:, :4].max() == 0  # pad columns are background


def test_covid_qu_ex_folder_with_lung_masks(tmp_path):
    src = tmp_path / "Lung Segmentation Data"
    expected_masks = {}
    for split in ("Train", "Val", "Test"):
        for cls in ("Normal", "COVID-19", "Non-COVID"):
            for j in range(2):
                name = f"{cls.lower()}_{split.lower()}_{j}.png"
                unit = smooth_image(32, 32, seed=j)
                mask = np.zeros((32, 32), np.uint8)
                mask[8:24, 4 + 4 * j : 14 + 4 * j] = 255
                (src / split / cls / "images").mkdir(parents=True, exist_ok=True)
                (src / split / cls / "lung masks").mkdir(parents=True, exist_ok=True)
                if cls == "COVID-19" and j == 1:  # 16-bit grey
                    Image.fromarray(unit_to_stored(unit, 16)).save(
                        src / split / cls / "images" / name
                    )
                elif cls == "Non-COVID" and j == 1:  # grey saved as RGB
                    rgb = np.repeat(unit_to_stored(unit, 8)[..., None], 3, -1)
                    Image.fromarray(rgb).save(src / split / cls / "images" / name)
                else:
                    Image.fromarray(unit_to_stored(unit, 8)).save(
                        src / split / cls / "images" / name
                    )
                Image.fromarray(mask).save(src / split / cls / "lung masks" / name)
                expected_masks[name[:-4]] = mask > 0
    colour = np.zeros((32, 32, 3), np.uint8)
    colour[..., 0] = 200
    Image.fromarray(colour).save(src / "Val" / "Normal" / "images" / "red.png")
    Image.fromarray(colour[..., 0]).save(src / "Val" / "Normal" / "lung masks" / "red.png")
    (src / "Val" / "Normal" / "images" / "broken.png").write_bytes(b"\x89PNG junk")
    Image.fromarray(colour[..., 0]).save(src / "Val" / "Normal" / "lung masks" / "broken.png")

    result, images, index, rejected = run(src, tmp_path / "o", size=16, dtype="uint8")
    assert result.input_format == "images"
    assert dict(zip(rejected.file, rejected.reason_code, strict=True)) == {
        "Val/Normal/images/broken.png": "unreadable_image",
        "Val/Normal/images/red.png": "colour",
    }
    assert len(index) == 18 and images.shape == (18, 16, 16) and images.dtype == np.uint8
    assert not index.file.str.contains("lung masks").any()
    assert set(index.source_split) == {"train", "val", "test"}
    assert set(index.class_name) == {"Normal", "COVID-19", "Non-COVID"}
    names = json.loads((tmp_path / "o" / "classes.json").read_text())["names"]
    assert names == ["COVID-19", "Non-COVID", "Normal"]
    assert (index.label == index.class_name.map(names.index)).all()
    assert (index.patient_id == index.image_id).all() and index.transfer_syntax.isna().all()
    lungs = np.load(tmp_path / "o" / "lung_masks.npy")
    for row in index.itertuples():
        want = SquareGeometry.for_shape((32, 32), 16).apply_labels(expected_masks[row.image_id])
        np.testing.assert_array_equal(lungs[row.row], want)
    ref = quantize(
        SquareGeometry.for_shape((32, 32), 16).apply(smooth_image(32, 32, seed=1)), "uint8"
    )
    for name in ("covid-19_train_1", "non-covid_train_1", "normal_train_1"):  # 16-bit, RGB, 8-bit
        stored = images[index.loc[index.image_id == name, "row"].item()].astype(int)
        assert np.abs(stored - ref).max() <= 1, name
    _, _, index2, rejected2 = run(src, tmp_path / "o2", size=16, allow_colour="luminance")
    assert rejected2.reason_code.tolist() == ["unreadable_image"] and len(index2) == 19


def _square_or_die(x: int) -> int:
    if x == 3:
        os._exit(1)  # a decoder crash takes its worker process down
    return x * x


def test_a_crashing_worker_costs_one_file_not_the_stage():
    from cxrgen.parallel import OrderedMap

    with OrderedMap(_square_or_die, list(range(8)), 2, "process", on_crash=lambda t: -t) as res:
        assert list(res) == [0, 1, 4, -3, 16, 25, 36, 49]


# ---------------------------------------------------------------------- JPEG Baseline shortcut


def test_jpeg_baseline_files_are_decoded_reduced_and_the_rest_as_before(tmp_path):
    src = tmp_path / "in"
    (src / "gt").mkdir(parents=True)
    shapes = {"a": (512, 512), "b": (512, 480), "c": (480, 512), "twin": (512, 512)}
    for i, (name, shape) in enumerate(shapes.items()):
        unit = xray_like(*shape, seed=i)
        stored = unit_to_stored(unit, 8)
        write_dicom(src / f"{name}.dcm", stored, bits_stored=8, syntax=JPEGBaseline8Bit)
    stored = unit_to_stored(xray_like(512, 512), 12)
    write_dicom(src / "rle.dcm", stored, bits_stored=12, syntax=RLELossless)
    twin = xray_like(512, 512, seed=3)  # a ground-truth image keeps the full decode
    masks = {"lesion": np.zeros(twin.shape, np.uint8), "lungs": np.ones(twin.shape, np.uint8)}
    np.savez(src / "gt" / "twin.npz", healthy=twin, **masks)
    outs = {}
    for threads in (1, 2):
        out = tmp_path / f"o{threads}"
        _, images, index, rejected = run(src, out, threads=threads, size=128)
        outs[threads] = (out / "images.npy").read_bytes()
    assert outs[1] == outs[2]  # same bytes whatever the worker count
    names = ["a.dcm", "b.dcm", "c.dcm", "rle.dcm", "twin.dcm"]
    assert rejected.empty and index.file.tolist() == names
    prov = json.loads((tmp_path / "o1" / "provenance.json").read_text())
    assert prov["jpeg_dct_reduced"] == {"2": 4}
    native = [tuple(r) for r in index[["orig_rows", "orig_cols"]].values]
    assert native == [(512, 512), (512, 480), (480, 512), (512, 512), (512, 512)]
    for row, name in enumerate(index.file):
        ref = full_path(src / name, 128)
        diff = grey_levels(images[row], ref)
        if name == "rle.dcm":
            np.testing.assert_array_equal(images[row], ref)
        else:  # the pad rows / columns stay where the full path puts them
            assert diff.max() < 8.0 and diff.mean() < 0.5, (name, diff.max(), diff.mean())
    # with ground truth only the twin is affected, and it keeps the full decode
    _, images, index, _ = run(src, tmp_path / "gt_out", size=128, ground_truth="gt")
    assert index.file.tolist() == ["twin.dcm"]
    np.testing.assert_array_equal(images[0], full_path(src / "twin.dcm", 128))
    prov = json.loads((tmp_path / "gt_out" / "provenance.json").read_text())
    assert prov["jpeg_dct_reduced"] == {}
