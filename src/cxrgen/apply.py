"""Stage ``apply``: a finished run's model on new images, no labels needed (``cxrgen apply``).

``apply(model_dir, input_path, out_dir)`` takes any folder (or one file) of DICOM / PNG / JPEG
images and, with the models of a finished run (``model_dir`` = ``RESULTS/models/<dataset>``):

1. preprocesses them as the model's training store was (size, aspect, intensity normalisation
   and dtype read from the diffusion model's provenance, never typed again); files that cannot
   be used (another photometric interpretation that cannot be converted, colour, corrupt) are
   listed in ``rejected.csv`` with the reason;
2. inverts them with the run's inversion settings (``RESULTS/latents/<dataset>/trajectory.json``);
3. decodes the counterfactuals of the settings the run chose on its calibration split
   (``RESULTS/metrics/<dataset>/counterfactual``): the detection setting (method, scale,
   statistic) and, where the run measured severity, the severity setting of each RALO total;
   msr takes the mask threshold its run set on calibration;
4. writes per image: the counterfactual and a PNG overlay of the anomaly map on the image
   (``images/``), and one row in ``scores.parquet`` / ``scores.csv``: the detection score,
   per-lung severity features (in the lungs the run's lung segmenter predicts where its
   evaluation used predicted masks, else in the image halves, as the evaluation) and
   predicted RALO scores (the chosen reading's regression refitted on all the run's
   calibration images, as the evaluation's 'all images' rows: new images may be of either
   class; the headline 'opacity images' rows fit on the opacity images only).

Nothing is fitted on the new images and no label of theirs is read. The run's calibration
images and their RALO scores are what the severity regression is fitted on, as in the
evaluation. ``method`` / ``scale`` override the detection setting.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cxrgen import io, provenance
from cxrgen.counterfactual.config import CounterfactualConfig, scale_name
from cxrgen.counterfactual.counterfactual import make_counterfactuals, msr_threshold
from cxrgen.counterfactual.invert import InvertConfig, invert_split
from cxrgen.data.classes import read_classes, write_classes
from cxrgen.data.preprocess import PreprocessConfig, preprocess
from cxrgen.data.store import (
    CLASSES_FILE,
    INDEX_FILE,
    REJECTED_FILE,
    SPLIT_FILE,
    image_set,
    stored_preprocessing,
)
from cxrgen.errors import ConfigError, DataError
from cxrgen.evaluation import severity
from cxrgen.evaluation.evaluate import SEVERITY_READINGS
from cxrgen.evaluation.evaluation_figures import evaluated_splits
from cxrgen.evaluation.evaluation_summary import chosen_detection, chosen_severity
from cxrgen.plotting import pyplot

log = logging.getLogger(__name__)

SPLIT = "apply"
# keys of the training store's preprocessing that describe labels of that data set
LABEL_KEYS = ("labels_csv", "class_info_csv", "severity_csv", "classes_from_severity",
              "ground_truth", "classes", "allow_unmatched_labels")  # fmt: skip


@dataclass(frozen=True)
class Setting:
    method: str
    scale: float
    statistic: str = ""  # the detection statistic (a column of scores.parquet)
    reading: str = ""  # the severity feature set (SEVERITY_READINGS)

    @property
    def folder(self) -> str:
        return f"{self.method}/{scale_name(self.scale)}"


@dataclass(frozen=True)
class Run:
    """The folders of a finished run around ``model_dir`` = RESULTS/models/<dataset>."""

    model_dir: Path

    @property
    def dataset(self) -> str:
        return self.model_dir.name

    @property
    def results(self) -> Path:
        return self.model_dir.parent.parent

    @property
    def store(self) -> Path:
        return self.results / "data" / self.dataset

    @property
    def latents(self) -> Path:
        return self.results / "latents" / self.dataset

    @property
    def counterfactuals(self) -> Path:
        return self.results / "counterfactuals" / self.dataset

    @property
    def metrics(self) -> Path:
        return self.results / "metrics" / self.dataset / "counterfactual"

    @property
    def calibration_split(self) -> str:
        """The split the run's evaluation chose its settings on (the default without one)."""
        if (self.metrics / "provenance.json").exists():
            return evaluated_splits(self.metrics)[0]
        return CounterfactualConfig().calibration_split

    def recorded(self, path: str) -> Path:
        """A path a run's provenance recorded: relative ones are relative to the folder the
        workflow ran in (the one holding RESULTS), not to where apply runs."""
        return Path(path) if Path(path).is_absolute() else self.results.parent / path


def preprocess_config(run: Run) -> PreprocessConfig:
    """The training store's preprocessing, without the keys that describe its labels."""
    prov_path = run.model_dir / "diffusion" / "provenance.json"
    if not prov_path.exists():
        raise ConfigError(f"{run.model_dir} is no model folder: {prov_path} is missing")
    saved = io.read_json(prov_path).get("preprocess")
    if saved is None:
        saved = stored_preprocessing(run.store)
    if saved is None:
        raise ConfigError(
            f"{prov_path} does not record the preprocessing the model was trained on and the "
            f"run's store {run.store} is not there: retrain the model with this version"
        )
    known = {f.name for f in fields(PreprocessConfig)}
    kept = {k: v for k, v in saved.items() if k in known and k not in LABEL_KEYS}
    return PreprocessConfig(**kept)


def chosen_settings(run: Run, method: str | None, scale: float | None) -> dict[str, Setting]:
    """'detection' and, where the run measured severity, each RALO total's setting."""
    cal = run.calibration_split
    out: dict[str, Setting] = {}
    det_path, sev_path = run.metrics / "detection.parquet", run.metrics / "severity.parquet"
    best = chosen_detection(pd.read_parquet(det_path), cal) if det_path.exists() else None
    if method is not None:
        if scale is None:
            scale = best["scale"] if best is not None else 0.0
        statistic = best["statistic"] if best is not None else "sum_abs"
        out["detection"] = Setting(method, float(scale), statistic)
    elif best is not None:
        out["detection"] = Setting(best["method"], float(best["scale"]), best["statistic"])
    else:
        raise ConfigError(
            f"no calibration-chosen setting in {det_path} (run the evaluation of the run, or "
            "give --method and --scale)"
        )
    if sev_path.exists():
        sev = pd.read_parquet(sev_path)
        for score in severity.HEADLINE_SCORES:
            row = chosen_severity(sev, cal, score) if not sev.empty else None
            if row is not None and row["feature_set"] in SEVERITY_READINGS:
                out[score] = Setting(row["method"], float(row["scale"]),
                                     reading=row["feature_set"])  # fmt: skip
    return out


def _provenance(run: Run, setting: Setting) -> dict:
    """The provenance.json of the run's counterfactual of ``setting`` ({} where missing)."""
    path = run.counterfactuals / setting.folder / "provenance.json"
    return io.read_json(path) if path.exists() else {}


def _counterfactual_config(saved: dict, device: str) -> CounterfactualConfig:
    """The run's own counterfactual config of a setting (defaults where it is missing)."""
    known = {f.name for f in fields(CounterfactualConfig)}
    config = saved.get("config", {})
    return replace(CounterfactualConfig(**{k: v for k, v in config.items() if k in known}),
                   device=device)  # fmt: skip


def _mask_threshold(run: Run, saved: dict, cfg: CounterfactualConfig) -> float:
    """msr's mask threshold as its run set it on the run's calibration images (recorded in
    the setting's provenance ``saved``, else set again from the run's first pass)."""
    if saved.get("mask_threshold") is not None:
        return float(saved["mask_threshold"])
    first = run.counterfactuals / Setting(*cfg.first_pass_setting).folder
    splits = pd.read_parquet(first / "scores.parquet", columns=["split"])["split"].to_numpy()
    return msr_threshold(np.load(first / "diff.npy", mmap_mode="r"), splits, cfg, first)


def _stage_input(input_path: Path, tmp: Path) -> Path:
    """The folder to preprocess: ``input_path`` itself, or a folder linking the one file."""
    if input_path.is_dir():
        return input_path
    if not input_path.is_file():
        raise DataError(f"the input {input_path} does not exist")
    folder = tmp / "input"
    folder.mkdir()
    os.symlink(input_path.resolve(), folder / input_path.name)
    return folder


def _write_split(store: Path, split_dir: Path, classes: list[str]) -> None:
    """Every stored image in split 'apply', unlabelled; the model's classes."""
    index = pd.read_parquet(store / INDEX_FILE, columns=["row", "image_id", "patient_id"])
    index["class_name"], index["label"], index["split"] = None, -1, SPLIT
    io.write_parquet(split_dir / SPLIT_FILE, index)
    write_classes(split_dir / CLASSES_FILE, classes)


def lung_masks(run: Run, store: Path, device: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(the run's predicted lung masks, the new images' masks by the same segmenter) where the
    run's evaluation read predicted masks; (None, None) where it used the image halves."""
    prov = run.metrics / "provenance.json"
    used = io.read_json(prov).get("lung_masks") if prov.exists() else None
    if not used:
        return None, None
    from cxrgen.lungseg.predict import predict_lung_masks  # only runs that segment lungs

    used = run.recorded(used)
    model = run.recorded(io.read_json(used.parent / "provenance.json")["model"])
    return np.load(used, mmap_mode="r"), predict_lung_masks(model, store, device)


def _maps(folder: Path, rows=slice(None)) -> tuple[np.ndarray, np.ndarray]:
    """(diff, absdiff) of a counterfactual folder, the given rows."""
    return tuple(np.load(folder / f"{a}.npy", mmap_mode="r")[rows] for a in ("diff", "absdiff"))


def _severity_predictions(
    run: Run, settings: dict[str, Setting], out_dir: Path, masks: tuple, new_features: dict
) -> pd.DataFrame:
    """Predicted RALO scores: per total, its setting's regression fitted on all the run's
    calibration images (their maps and RALO scores; as the evaluation's 'all images' rows, as
    new images may be of either class) and applied to the new images' maps.
    ``new_features``: the new images' lung features by setting folder, filled in here."""
    preds = []
    index = pd.read_parquet(run.store / INDEX_FILE).set_index("row")
    fits: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}
    for total in severity.HEADLINE_SCORES:
        if total not in settings:
            continue
        s = settings[total]
        names = list(SEVERITY_READINGS[s.reading])
        if s.folder not in fits:  # the two totals often share a setting
            fit_dir = run.counterfactuals / s.folder
            table = pd.read_parquet(fit_dir / "scores.parquet", columns=["split", "store_row"])
            cal = np.flatnonzero(table["split"].to_numpy() == run.calibration_split)
            rows = table["store_row"].to_numpy()[cal]
            run_masks = None if masks[0] is None else np.asarray(masks[0][rows])
            fits[s.folder] = (severity.lung_features(*_maps(fit_dir, cal), run_masks),
                              index.loc[rows])  # fmt: skip
        if s.folder not in new_features:
            new_features[s.folder] = severity.lung_features(
                *_maps(out_dir / "counterfactuals" / s.folder), masks[1]
            )
        (fit, targets), new = fits[s.folder], new_features[s.folder]
        kind = total.split("_")[0]  # extent / opacity: the total and its per-lung scores
        scores = [c for c in severity.SCORES if c.startswith(kind) and c in targets]
        pred = severity.predict_scores(fit, targets.reset_index(), new, names, scores)
        preds.append(pred.add_prefix("predicted_"))
    return pd.concat(preds, axis=1) if preds else pd.DataFrame()


def write_overlays(out_dir: Path, ids, originals, counterfactuals, maps) -> None:
    """``images/{id}_counterfactual.png`` and ``images/{id}_overlay.png`` (the map, hot where
    the counterfactual removed intensity, over the image; one colour scale for all images)."""
    plt = pyplot()
    top = float(np.quantile(np.asarray(maps), 0.999)) or 1.0
    folder = out_dir / "images"
    folder.mkdir(parents=True, exist_ok=True)
    for i, image_id in enumerate(tqdm(ids, desc="overlays", unit="img", leave=False)):
        with io.atomic_path(folder / f"{image_id}_counterfactual.png") as tmp:
            plt.imsave(tmp, np.clip(counterfactuals[i], 0, 1), cmap="gray", vmin=0, vmax=1)
        grey = np.repeat(np.clip(originals[i], 0, 1)[..., None], 3, axis=2)
        heat = plt.get_cmap("inferno")(np.clip(maps[i] / top, 0, 1))[..., :3]
        alpha = np.clip(maps[i] / top, 0, 1)[..., None] * 0.7
        with io.atomic_path(folder / f"{image_id}_overlay.png") as tmp:
            plt.imsave(tmp, (1 - alpha) * grey + alpha * heat)


def apply(
    model_dir: str | Path,
    input_path: str | Path,
    out_dir: str | Path,
    method: str | None = None,
    scale: float | None = None,
    device: str = "auto",
    progress: bool = True,
) -> pd.DataFrame:
    """Score the images of ``input_path`` with the run of ``model_dir``; return the table."""
    run, input_path, out_dir = Run(Path(model_dir)), Path(input_path), Path(out_dir)
    pre = preprocess_config(run)
    classes = read_classes(run.model_dir / "diffusion" / CLASSES_FILE)
    settings = chosen_settings(run, method, scale)
    store, split = out_dir / "store", out_dir / "split"
    with tempfile.TemporaryDirectory() as tmp:
        result = preprocess(_stage_input(input_path, Path(tmp)), store, pre, progress=progress)
    rejected = pd.read_parquet(store / REJECTED_FILE)
    io.write_text(out_dir / "rejected.csv", rejected.to_csv(index=False))
    if result.n_stored == 0:
        raise DataError(
            f"no usable image in {input_path} ({result.n_inputs} files, {result.n_rejected} "
            f"rejected: {result.rejected_by_reason}); see {out_dir / 'rejected.csv'}"
        )
    _write_split(store, split, classes)
    traj_path = run.latents / "trajectory.json"
    saved = io.read_json(traj_path) if traj_path.exists() else {}
    inv = InvertConfig(splits=(SPLIT,), device=device, **{
        k: saved[k] for k in ("steps", "depth") if k in saved})  # fmt: skip
    if saved.get("conditioning") == "target":
        inv = replace(inv, conditioning="target", target_class=saved["target_class"])
    invert_split(run.model_dir / "diffusion", store, split, out_dir / "latents", inv, progress,
                 labelled_only=False)  # fmt: skip
    done: set[str] = set()
    for s in dict.fromkeys(settings.values()):
        saved = _provenance(run, s)
        cfg = _counterfactual_config(saved, device)
        first = Setting(*cfg.first_pass_setting)
        needed = [first, s] if s.method == "msr" else [s]
        for n in needed:
            if n.folder in done:
                continue
            model = run.model_dir / ("stargan" if n.method == "stargan" else "diffusion")
            make_counterfactuals(
                n.method, n.scale, out_dir / "latents", model, store,
                out_dir / "counterfactuals" / n.folder, cfg, run.model_dir / "classifier",
                progress, first_pass_dir=out_dir / "counterfactuals" / first.folder,
                mask_threshold=_mask_threshold(run, saved, cfg) if n.method == "msr" else None,
            )  # fmt: skip
            done.add(n.folder)
    det = settings["detection"]
    det_dir = out_dir / "counterfactuals" / det.folder
    scores = pd.read_parquet(det_dir / "scores.parquet")
    images = image_set(store, split, SPLIT, labelled_only=False)
    diff = np.load(det_dir / "diff.npy", mmap_mode="r")
    absdiff = np.load(det_dir / "absdiff.npy", mmap_mode="r")
    removed = "removed" in det.statistic
    write_overlays(out_dir, images.table["image_id"], images.rows(0, len(images)),
                   np.load(det_dir / "counterfactuals.npy", mmap_mode="r"),
                   np.clip(diff, 0, None) if removed else absdiff)  # fmt: skip
    index = pd.read_parquet(store / INDEX_FILE, columns=["row", "file"]).set_index("row")
    table = pd.DataFrame({
        "image_id": images.table["image_id"],
        "file": index.loc[images.table["store_row"], "file"].to_numpy(),
        "method": det.method, "scale": det.scale, "statistic": det.statistic,
        "score": scores[det.statistic].to_numpy(),
    })  # fmt: skip
    masks = lung_masks(run, store, device)
    features = {det.folder: severity.lung_features(diff, absdiff, masks[1])}
    predicted = _severity_predictions(run, settings, out_dir, masks, features)
    table = pd.concat([table, features[det.folder].drop(columns=["row"]), predicted], axis=1)
    io.write_parquet(out_dir / "scores.parquet", table)
    io.write_text(out_dir / "scores.csv", table.to_csv(index=False))
    provenance.write(
        out_dir / "provenance.json", "apply", None, model=str(run.model_dir),
        input=str(input_path), preprocess=asdict(pre), invert=asdict(inv),
        settings={k: asdict(v) for k, v in settings.items()}, n_scored=len(table),
        n_rejected=int(result.n_rejected),
    )  # fmt: skip
    log.info("scored %d images (%d rejected) with %s %s %s -> %s", len(table),
             result.n_rejected, det.method, scale_name(det.scale), det.statistic,
             out_dir)  # fmt: skip
    return table
