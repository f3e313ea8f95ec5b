"""Phantom chest X-rays laid out like the RSNA Pneumonia Detection Challenge set.

Layout of ``out_dir`` (see :func:`make_rsna_phantoms`)::

    stage_2_train_images/{image_id}.dcm   one DICOM per image, plus a few junk files
    stage_2_train_labels.csv              patientId,x,y,width,height,Target
    stage_2_detailed_class_info.csv       patientId,class
    ralo_severity.csv                     per-image RALO extent / opacity scores
    ground_truth/{image_id}.npz           image, healthy twin, lesion mask, lung labels
    manifest.parquet                      one row per file (junk files flagged)
    phi_values.json                       the fake PHI written into the headers
    phantom_config.json                   the config (no timestamps: outputs are deterministic)

As in the real set, the CSVs' ``patientId`` is the image id (the file stem);
the true patient is the DICOM PatientID, shared by a patient's follow-ups.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cxrgen import io
from cxrgen.data.classes import LUNG_OPACITY
from cxrgen.data.labels import CLASS_INFO_COLUMNS, LABEL_COLUMNS, SEVERITY_COLUMNS
from cxrgen.data.store import RALO_COLUMNS
from cxrgen.phantoms.config import PhantomConfig
from cxrgen.phantoms.corrupt import CORRUPT_KINDS, corrupt_file_bytes
from cxrgen.phantoms.dicom_writer import (
    SYNTAXES,
    Encoding,
    decode_unit,
    encode_dicom,
    header_dataset,
)
from cxrgen.phantoms.encoding_plan import plan_encodings
from cxrgen.phantoms.ground_truth import write_ground_truth
from cxrgen.phantoms.identifiers import PHI_KEYS, uuid_string
from cxrgen.phantoms.lesions import lesion_boxes, ralo_scores
from cxrgen.phantoms.patients import (
    ImagePlan,
    header_info,
    junk_header_info,
    plan_patient_images,
)
from cxrgen.phantoms.scene import render_image

logger = logging.getLogger(__name__)

IMAGE_DIR = "stage_2_train_images"
LABELS_CSV = "stage_2_train_labels.csv"
CLASS_INFO_CSV = "stage_2_detailed_class_info.csv"
SEVERITY_CSV = "ralo_severity.csv"
GROUND_TRUTH_DIR = "ground_truth"
MANIFEST = "manifest.parquet"
PHI_JSON = "phi_values.json"
CONFIG_JSON = "phantom_config.json"


def make_rsna_phantoms(
    out_dir: str | os.PathLike, cfg: PhantomConfig, progress: bool = True
) -> pd.DataFrame:
    """Write the RSNA-layout phantom set into ``out_dir``; return the manifest.

    The same ``cfg`` gives byte-identical files. Files of an earlier run in
    the image and ground-truth folders that this run did not write are removed.
    """
    return write_phantom_set(out_dir, cfg, progress, IMAGE_DIR, class_csvs=True, desc="RSNA")


def write_phantom_set(
    out_dir: str | os.PathLike,
    cfg: PhantomConfig,
    progress: bool,
    image_folder: str,
    class_csvs: bool,
    desc: str,
) -> pd.DataFrame:
    """The DICOM phantoms of ``cfg`` in ``out_dir / image_folder``, their severity CSV, ground
    truth and manifest, and (``class_csvs``) the RSNA label and class-info CSVs."""
    out = Path(out_dir)
    image_dir, gt_dir = out / image_folder, out / GROUND_TRUTH_DIR
    image_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)

    plans = plan_patient_images(cfg)
    encodings = plan_encodings(
        np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(2,))),
        len(plans),
        cfg.transfer_syntaxes,
        cfg.transfer_syntax_weights,
        cfg.bits_stored,
        cfg.frac_monochrome1,
        cfg.frac_windowed,
        cfg.frac_rescaled,
        cfg.jpeg_quality,
    )
    labels, classes, severity, manifest, phi = [], [], [], [], {}
    bar = tqdm(
        zip(plans, encodings, strict=True),
        total=len(plans),
        disable=not progress,
        desc=f"{desc} phantoms",
        unit="img",
    )
    for plan, enc in bar:
        row, boxes = _write_image(plan, enc, cfg, image_dir, gt_dir, image_folder)
        manifest.append(row)
        phi[plan.image_id] = {k: plan.phi[k] for k in PHI_KEYS}
        if boxes:
            labels += [(plan.image_id, *b, 1) for b in boxes]
        else:
            labels.append((plan.image_id, np.nan, np.nan, np.nan, np.nan, 0))
        classes += [(plan.image_id, row["class_name"])] * max(len(boxes), 1)
        severity.append({"patientId": plan.image_id, **{c: row[c] for c in RALO_COLUMNS}})
    manifest += _write_corrupt_files(cfg, image_dir, image_folder)

    csv = {"index": False, "lineterminator": "\n"}
    if class_csvs:
        label_df = pd.DataFrame(labels, columns=list(LABEL_COLUMNS))
        io.write_text(out / LABELS_CSV, label_df.to_csv(**csv))
        class_df = pd.DataFrame(classes, columns=list(CLASS_INFO_COLUMNS))
        io.write_text(out / CLASS_INFO_CSV, class_df.to_csv(**csv))
    sev_df = pd.DataFrame(severity, columns=list(SEVERITY_COLUMNS))
    io.write_text(out / SEVERITY_CSV, sev_df.to_csv(**csv))
    df = _manifest_frame(manifest)
    io.write_parquet(out / MANIFEST, df)
    values = sorted({v for entry in phi.values() for v in entry.values() if v})
    io.write_json(out / PHI_JSON, {"keys": list(PHI_KEYS), "images": phi, "values": values})
    io.write_json(out / CONFIG_JSON, dataclasses.asdict(cfg))
    _remove_stale(image_dir, {Path(f).name for f in df["file"]}, ".dcm")
    _remove_stale(gt_dir, {f"{i}.npz" for i in df.loc[~df["corrupt"], "image_id"]}, ".npz")
    counts = df.loc[~df["corrupt"], "class_name"].value_counts().to_dict()
    logger.info(
        "wrote %d phantom images of %d patients (%s) and %d junk files to %s",
        len(plans),
        cfg.n_patients,
        counts,
        cfg.n_corrupt,
        out,
    )
    return df


def _write_image(
    plan: ImagePlan, enc: Encoding, cfg: PhantomConfig, image_dir: Path, gt_dir: Path, folder: str
) -> tuple[dict, list]:
    """Draw, encode and store one image and its ground truth; its manifest row and boxes."""
    rows, cols = plan.setup.shape
    rendered = render_image(plan.anatomy, plan.setup, plan.lesion)
    header = header_dataset(header_info(plan, cfg.seed), enc, rows, cols)
    stored = enc.to_stored(rendered.image)
    image = decode_unit(header, stored)
    healthy = decode_unit(header, enc.to_stored(rendered.healthy))
    scores = ralo_scores(image, healthy, rendered.lesion, rendered.lungs)
    boxes = lesion_boxes(rendered.lesion, rendered.lungs, max(2, round(0.03 * min(rows, cols))))
    has_opacity = bool(boxes)
    class_name = LUNG_OPACITY if has_opacity else plan.non_opacity_class
    io.write_bytes(image_dir / f"{plan.image_id}.dcm", encode_dicom(header, enc, stored))
    write_ground_truth(
        gt_dir / f"{plan.image_id}.npz", image, healthy, rendered.lesion, rendered.lungs
    )
    row = {
        "image_id": plan.image_id,
        "patient_id": plan.patient_id,
        "file": f"{folder}/{plan.image_id}.dcm",
        "ground_truth": f"{GROUND_TRUTH_DIR}/{plan.image_id}.npz",
        "class_name": class_name,
        "target": int(has_opacity),
        "visit": plan.visit,
        "transfer_syntax": enc.syntax,
        "transfer_syntax_uid": str(SYNTAXES[enc.syntax]),
        "lossy": enc.lossy,
        "photometric": enc.photometric,
        "bits_stored": enc.bits_stored,
        "bits_allocated": enc.bits_allocated,
        "windowed": enc.windowed,
        "rescaled": enc.rescale is not None,
        "rows": rows,
        "cols": cols,
        "modality": plan.modality,
        "view_position": "AP" if plan.setup.ap_view else "PA",
        "sex": plan.sex,
        "findings": ";".join(plan.anatomy.findings),
        "devices": ";".join(plan.setup.devices),
        "opacity_pattern": plan.lesion.pattern if (plan.lesion and has_opacity) else "",
        **scores,
        "lesion_fraction": float(rendered.lesion.sum()) / max(int((rendered.lungs > 0).sum()), 1),
        "n_boxes": len(boxes),
        "corrupt": False,
        "corrupt_kind": "",
    }
    return row, boxes


def _write_corrupt_files(cfg: PhantomConfig, image_dir: Path, folder: str) -> list[dict]:
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(3,)))
    rows = []
    for i in range(cfg.n_corrupt):
        kind = CORRUPT_KINDS[i % len(CORRUPT_KINDS)]
        image_id = uuid_string(rng)
        info = junk_header_info(cfg.seed, image_id, rng)
        io.write_bytes(image_dir / f"{image_id}.dcm", corrupt_file_bytes(kind, info, rng))
        rows.append(
            {
                "image_id": image_id,
                "file": f"{folder}/{image_id}.dcm",
                "corrupt": True,
                "corrupt_kind": kind,
            }
        )
    return rows


_INT_COLUMNS = (
    "target",
    "visit",
    "bits_stored",
    "bits_allocated",
    "rows",
    "cols",
    "n_boxes",
    *RALO_COLUMNS,
)


def _manifest_frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for col in _INT_COLUMNS:
        df[col] = df[col].astype("Int64")
    for col in ("lossy", "windowed", "rescaled"):
        df[col] = df[col].astype("boolean")
    df["corrupt"] = df["corrupt"].astype(bool)
    return df


def _remove_stale(folder: Path, keep: set[str], suffix: str) -> None:
    for path in sorted(folder.glob(f"*{suffix}")):
        if path.name not in keep:
            logger.warning("removing %s left by an earlier phantom run", path)
            path.unlink()
