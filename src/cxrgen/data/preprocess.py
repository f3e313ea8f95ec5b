"""The preprocessing stage: any folder of DICOM (or PNG/JPEG) files -> one tensor store.

``preprocess(input_dir, output_dir, cfg)`` takes every file under
``input_dir`` as an input (sorted by relative path; skipped: hidden files,
the label CSVs, the ground-truth folder, the output folder, documentation /
table suffixes; see :func:`cxrgen.data.imagefolder.scan_inputs`), decodes each
input (:mod:`cxrgen.data.dicom`, :mod:`cxrgen.data.imagefolder`),
normalises it to [0, 1], pads or crops it to a square and resizes it
(:mod:`cxrgen.data.geometry`), and writes to ``output_dir``:

* ``images.npy`` (N, size, size) uint16 or uint8, the [0, 1] image times 65535 or 255.
* ``healthy.npy`` (same dtype), ``lesion_masks.npy`` and ``lung_masks.npy``
  (uint8, nearest neighbour) when ``ground_truth`` is a folder of
  ``{image_id}.npz`` files with arrays ``healthy``, ``lesion``, ``lungs`` on the
  native grid; ``lung_masks.npy`` (0/1) / ``lesion_masks.npy`` from
  ``lung masks/`` / ``infection masks/`` folders beside every ``images/``
  folder of an image-folder input (COVID-QU-Ex).
* ``index.parquet``: one row per stored image, in row order; columns in
  :data:`INDEX_SCHEMA` plus float64 severity columns when ``severity_csv`` is
  given. ``boxes`` is a list of ``[x, y, w, h]`` float64 lists on the stored
  grid; ``label`` and ``target`` are -1 when unknown.
* ``rejected.parquet``: one row per input that could not be used (file,
  image_id, reason_code, reason). Every input is in exactly one of the two.
* ``classes.json`` ({"names": [...], "index": {name: i}}): explicit ``classes``
  order, else class names sorted; ``provenance.json``.

JPEG Baseline shortcut: an 8-bit grey JPEG Baseline DICOM without VOI /
Modality LUTs or window (the RSNA download) that is at least 4x larger than
``size`` is decoded at 1/2, 1/4 or 1/8 of its size by libjpeg's DCT scaling
and then resized, leaving the resize a factor of 2 or more, its Gaussian
matched to the full path's blur (:mod:`cxrgen.data.jpeg_draft`); the stored
image differs from the full decode + resize by at most 2.8 grey levels of 255,
0.4 on average, on noisy 1024 px images stored at 256 (up to 7 at hard edges;
BENCHMARKS.md). Inputs with ``ground_truth`` keep the full decode, so
an image and its healthy twin go through the same resize; every other transfer
syntax is unchanged. ``provenance.json`` counts the reduced decodes
(``jpeg_dct_reduced``).

Labels: with ``labels_csv`` (RSNA) the class comes from the CSVs
(:mod:`cxrgen.data.labels`) and inputs whose id has no label are rejected
``no_label`` once they decoded (a file that does not decode is rejected for
that fault, which says more about it); image folders take the class from the
folder layout; with ``classes_from_severity`` (a RALO-layout data set: images and a
severity CSV, no class labels) the class is read off the scores
(:func:`cxrgen.data.labels.labels_from_severity`: Lung Opacity where one is above 0, else
Normal) and images without scores are rejected ``no_label``. With ``classes`` set,
images of other classes are rejected ``excluded_class`` (leave it unset to keep them and
let the split choose).

No header element other than those columns is copied; file paths are copied
as they are, so keep identifiers out of file names. ``patient_id`` is the
DICOM PatientID (the RSNA ids are already anonymised; set
``hash_patient_id`` with a ``patient_id_salt`` to store a salted SHA-256
prefix instead), the image id when the header has none or for image files.
Relative ``labels_csv``, ``class_info_csv``, ``severity_csv`` and
``ground_truth`` paths are used as given when they exist (relative to the
working directory), else resolved against ``input_dir``.

Parallelism: the pydicom / pylibjpeg / openjpeg decoders hold the GIL (only
the resize releases it), so ``executor="process"`` (forked worker
processes, see :class:`cxrgen.parallel.OrderedMap`) is the default; ``"thread"`` is
offered. Results are consumed in input order through a bounded window, so
the output bytes do not depend on ``threads`` and at most ``4 * threads``
resized images are in flight; images are streamed into memory-mapped files.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import PIL
import pyarrow as pa
from tqdm.auto import tqdm

from cxrgen import io, provenance
from cxrgen.data import imagefolder, jpeg_draft, labels
from cxrgen.data.classes import write_classes
from cxrgen.data.dicom import Rejected, decode_dicom, dicom_image_id
from cxrgen.data.geometry import SquareGeometry, quantize
from cxrgen.data.preprocess_config import PreprocessConfig
from cxrgen.data.store import INDEX_SCHEMA, REJECTED_SCHEMA, finish_array, write_table
from cxrgen.errors import DataError
from cxrgen.parallel import OrderedMap

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreprocessResult:
    """Counts and paths of one preprocessing run."""

    output_dir: Path
    input_format: str  # "dicom" | "images"
    n_inputs: int
    n_stored: int
    n_rejected: int
    rejected_by_reason: dict[str, int]
    class_names: tuple[str, ...]
    files: dict[str, Path]  # "images", "healthy", ..., "index", "rejected", "classes" -> path


@dataclass(frozen=True)
class _Task:
    rel: str
    path: Path
    kind: str  # "dicom" | "image"
    ground_truth: Path | None
    masks: tuple[tuple[str, Path], ...]
    boxes: tuple[tuple[float, float, float, float], ...]
    reject_if_decoded: tuple[str, str] | None = None  # (code, message) when usable otherwise


def preprocess(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    cfg: PreprocessConfig,
    threads: int = 1,
    progress: bool = True,
) -> PreprocessResult:
    """Run the stage; see the module docstring for the outputs. Raises DataError on bad input."""
    start = time.perf_counter()
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if not input_dir.is_dir():
        what = "is not a folder" if input_dir.exists() else "does not exist"
        raise DataError(f"input folder {input_dir} {what}; point preprocess at the image folder")
    if not any(input_dir.iterdir()):
        raise DataError(f"input folder {input_dir} is empty: no image files to preprocess")
    aux = {
        k: labels.resolve_path(getattr(cfg, k), input_dir, k, k == "ground_truth")
        for k in ("labels_csv", "class_info_csv", "severity_csv", "ground_truth")
    }
    rels = imagefolder.scan_inputs(input_dir, skip=[p for p in (*aux.values(), output_dir) if p])
    fmt = (
        imagefolder.detect_format(input_dir, rels)
        if cfg.input_format == "auto"
        else (cfg.input_format)
    )
    if fmt == "images":
        rels = imagefolder.drop_mask_files(input_dir, rels)
    if not rels:
        skipped = " ".join(sorted(imagefolder.SKIPPED_SUFFIXES))
        raise DataError(f"no image files under {input_dir} ({skipped} files are skipped)")
    ids = {r: dicom_image_id(r) if fmt == "dicom" else PurePosixPath(r).stem for r in rels}
    label_map, severity = labels.read_labels(aux, set(ids.values()), cfg.allow_unmatched_labels)
    if cfg.classes_from_severity:
        label_map = labels.labels_from_severity(severity)
    tasks, rejected, meta = _plan(input_dir, rels, ids, fmt, cfg, label_map, aux["ground_truth"])
    if label_map is not None:
        present = [lab.class_name for lab in label_map.values()]
    else:
        present = [m["class_name"] for m in meta.values() if m["class_name"] is not None]
    names = labels.class_names(present, cfg.classes)
    arrays = ["images"]
    if aux["ground_truth"] is not None:
        arrays += ["healthy", "lesion_masks", "lung_masks"]
    else:
        arrays += sorted({k for t in tasks for k, _ in t.masks})

    output_dir.mkdir(parents=True, exist_ok=True)
    rows, failed, files, reduced = _decode_into_store(
        tasks, arrays, output_dir, cfg, threads, progress
    )
    rejected = sorted(rejected + [(t.rel, ids[t.rel], code, msg) for t, code, msg in failed])
    counts = dict(sorted(Counter(r[2] for r in rejected).items()))
    if not rows:
        detail = "; ".join(f"{f}: {msg}" for f, _, _, msg in rejected[:3])
        raise DataError(
            f"none of the {len(rels)} inputs under {input_dir} could be used "
            f"({counts}), e.g. {detail}"
        )

    _complete_rows(rows, meta, names, severity, cfg)
    schema = INDEX_SCHEMA
    if severity is not None:
        schema = pa.schema([*INDEX_SCHEMA, *(pa.field(c, pa.float64()) for c in severity.columns)])
    files["index"] = write_table(output_dir / "index.parquet", rows, schema)
    named = [dict(zip(REJECTED_SCHEMA.names, r, strict=True)) for r in rejected]
    files["rejected"] = write_table(output_dir / "rejected.parquet", named, REJECTED_SCHEMA)
    files["classes"] = output_dir / "classes.json"
    write_classes(files["classes"], names)
    result = PreprocessResult(
        output_dir, fmt, len(rels), len(rows), len(rejected), counts, tuple(names), files
    )
    summary = {
        k: getattr(result, k)
        for k in (
            "input_format",
            "n_inputs",
            "n_stored",
            "n_rejected",
            "rejected_by_reason",
            "class_names",
        )
    }
    seconds = round(time.perf_counter() - start, 3)
    provenance.write(
        output_dir / "provenance.json",
        "preprocess",
        cfg,
        input_dir=str(input_dir),
        threads=threads,
        seconds=seconds,
        # images decoded at 1/f of their size by JPEG DCT scaling (cxrgen.data.jpeg_draft)
        jpeg_dct_reduced={str(f): n for f, n in sorted(reduced.items()) if f > 1},
        pillow=PIL.__version__,
        **summary,
    )
    if rejected:
        logger.warning(
            "rejected %d of %d inputs: %s (see %s)",
            len(rejected),
            len(rels),
            counts,
            files["rejected"],
        )
    logger.info("stored %d images in %s (%.1f s)", len(rows), output_dir, seconds)
    return result


def _plan(input_dir, rels, ids, fmt, cfg, label_map, gt_dir):
    """Decode tasks, per-file index fields, and the rejections known before decoding."""
    tasks, rejected, meta = [], [], {}
    masks_of = {r: imagefolder.mask_paths(input_dir, r) for r in rels} if fmt == "images" else {}
    kinds = set.intersection(*(set(m) for m in masks_of.values())) if masks_of else set()
    for kind in sorted({k for m in masks_of.values() for k in m} - kinds):
        logger.warning("ignoring '%s' folders: not every images/ folder has one", kind)
    for rel in rels:
        image_id, info = ids[rel], imagefolder.folder_info(rel)
        class_name = info.class_name if fmt == "images" else None
        target, boxes, reject, after = -1, (), None, None
        lab = label_map.get(image_id) if label_map is not None else None
        if lab is not None:
            class_name, target, boxes = lab.class_name, lab.target, lab.boxes
        gt = gt_dir / f"{image_id}.npz" if gt_dir is not None else None
        masks = () if gt is not None else tuple((k, masks_of[rel][k]) for k in sorted(kinds))
        missing = [k for k, p in masks if p is None]
        if label_map is not None and lab is None:
            # decoded all the same, so that a broken file is reported for what is wrong with it
            where = (
                "has no severity score" if cfg.classes_from_severity else "is not in the labels CSV"
            )
            after = ("no_label", f"image id {image_id} {where}")
            gt, masks = None, ()
        elif cfg.classes is not None and class_name not in cfg.classes:
            reject = ("excluded_class", f"class {class_name!r} is not in {list(cfg.classes)}")
        elif gt is not None and not gt.is_file():
            reject = ("no_ground_truth", f"ground truth {gt} does not exist")
        elif missing:
            reject = ("no_mask", f"no {', '.join(missing)} file for this image")
        if reject is not None:
            rejected.append((rel, image_id, *reject))
            continue
        meta[rel] = dict(
            image_id=image_id,
            file=rel,
            class_name=class_name,
            target=target,
            source_split=info.source_split,
        )
        kind = "dicom" if fmt == "dicom" else "image"
        tasks.append(_Task(rel, input_dir / rel, kind, gt, masks, boxes, after))
    return tasks, rejected, meta


def _complete_rows(rows, meta, names, severity, cfg) -> None:
    """Add the planned fields, the label index, the (hashed) patient id and severity scores."""
    index = {n: i for i, n in enumerate(names)}
    scores = severity.to_dict("index") if severity is not None else None
    for row in rows:
        row.update(meta[row.pop("rel")])
        row["label"] = index.get(row["class_name"], -1)
        if cfg.hash_patient_id:
            digest = hashlib.sha256(f"{cfg.patient_id_salt}\0{row['patient_id']}".encode())
            row["patient_id"] = digest.hexdigest()[:16]
        if scores is not None:
            row.update(scores.get(row["image_id"], dict.fromkeys(severity.columns, np.nan)))


def _decode_into_store(tasks, arrays, output_dir, cfg, threads, progress):
    """Decode ``tasks`` in order into ``{array}.npy`` files.

    Returns (rows, failures, files, reductions): ``reductions`` counts the
    stored images by the JPEG DCT reduction they were decoded at (1: full).

    Rows are streamed into spill memmaps in a temporary folder inside
    ``output_dir``; when every task succeeded these are renamed into place,
    otherwise their first N rows are copied into arrays of the right length.
    """
    rows: list[dict] = []
    failed: list[tuple[_Task, str, str]] = []
    reduced: Counter = Counter()
    files = {name: output_dir / f"{name}.npy" for name in arrays}
    if not tasks:
        return rows, failed, files, reduced
    with tempfile.TemporaryDirectory(dir=output_dir, prefix=".preprocess-") as tmp:
        with ExitStack() as stack:
            spill = {}
            for name in arrays:
                dtype = cfg.dtype if name in ("images", "healthy") else "uint8"
                shape = (len(tasks), cfg.size, cfg.size)
                path = Path(tmp) / f"{name}.npy"
                spill[name] = stack.enter_context(io.open_npy_memmap(path, shape, dtype))
            worker = functools.partial(_process, cfg=cfg)
            results = stack.enter_context(
                OrderedMap(worker, tasks, threads, cfg.executor, on_crash=_crashed)
            )
            bar = stack.enter_context(
                tqdm(total=len(tasks), desc="preprocess", unit="img", disable=not progress)
            )
            for task, (out, info, err) in zip(tasks, results, strict=True):
                bar.update(1)
                err = err or task.reject_if_decoded
                if err is not None:
                    failed.append((task, *err))
                    continue
                for name, arr in out.items():
                    spill[name][len(rows)] = arr
                reduced[info.pop("reduction")] += 1
                rows.append({"row": len(rows), "rel": task.rel, **info})
        for name in arrays if rows else ():
            finish_array(Path(tmp) / f"{name}.npy", files[name], len(rows), len(tasks))
    return rows, failed, files, reduced


def _process(task: _Task, cfg: PreprocessConfig):
    """Decode one input -> (arrays, index fields, None) or (None, None, (code, message))."""
    try:
        opts = dict(multiframe=cfg.multiframe, allow_colour=cfg.allow_colour)
        if task.kind == "dicom":
            # a healthy twin is resized from its native grid, so its image must be too
            if task.ground_truth is None:
                opts.update(store_size=cfg.size, aspect=cfg.aspect)
            dec = decode_dicom(task.path, **opts)
        else:
            dec = imagefolder.read_image(task.path, **opts)
        geom = SquareGeometry.for_shape(dec.shape, cfg.size, cfg.aspect)
        # the same square and resize, from the reduced grid where the decode was reduced
        image = jpeg_draft.resize_reduced(dec.image, cfg.size, cfg.aspect, dec.reduction)
        arrays = {"images": quantize(image, cfg.dtype)}
        if task.ground_truth is not None:
            gt = labels.read_ground_truth(task.ground_truth, dec.shape)
            arrays["healthy"] = quantize(geom.apply(gt["healthy"]), cfg.dtype)
            arrays["lesion_masks"] = geom.apply_labels(gt["lesion"])
            arrays["lung_masks"] = geom.apply_labels(gt["lungs"])
        for kind, path in task.masks:
            arrays[kind] = geom.apply_labels(imagefolder.read_mask(path, dec.shape))
    except Rejected as exc:
        return None, None, (exc.code, exc.message)
    except Exception as exc:  # one bad file never stops the stage
        return None, None, ("decode_error", f"unexpected {type(exc).__name__}: {exc}")
    boxes = geom.map_boxes(np.asarray(task.boxes, dtype=np.float64))
    image_id = dicom_image_id(task.rel) if task.kind == "dicom" else PurePosixPath(task.rel).stem
    info = dict(
        patient_id=dec.patient_id or image_id,
        n_boxes=len(boxes),
        boxes=boxes.tolist(),
        orig_rows=dec.shape[0],
        orig_cols=dec.shape[1],
        photometric=dec.photometric,
        transfer_syntax=dec.transfer_syntax,
        file_format=dec.file_format,
        bits_stored=dec.bits_stored,
        n_frames=dec.n_frames,
        reduction=dec.reduction,  # not an index column: counted into provenance.json
    )
    return arrays, info, None


def _crashed(task: _Task):
    return None, None, ("decode_error", "decoding crashed its worker process")
