"""The one-page summary of an evaluation: headline numbers picked from the metric tables.

Rows: section, metric, value, ci_low, ci_high, setting (which method / scale / statistic /
map the number belongs to), split (where the number comes from). Every setting is chosen on
the calibration split and every number is its test-split value: the summary never names a
test maximum. The localisation numbers are those of the detection setting's method and
scale, so the page reads as one result.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cxrgen import io

COLUMNS = ["section", "metric", "value", "ci_low", "ci_high", "setting", "split"]
LABEL_INFORMED_NOTE = (
    "label-informed inversion: every image was encoded with its own label, so these numbers "
    "explain known labels and are not a detection, localisation or severity result"
)


def setting_name(method, scale, statistic=None) -> str:
    """'cfg 3', 'stargan 0', 'cfg 1 sum_abs'; the method alone where the scale is missing."""
    parts = [str(method)]
    if scale is not None and not (isinstance(scale, float | np.floating) and np.isnan(scale)):
        parts.append(f"{float(scale):g}")
    if statistic:
        parts.append(str(statistic))
    return " ".join(parts)


def _row(section, metric, value, setting="", low=np.nan, high=np.nan, split="") -> dict:
    return dict(section=section, metric=metric, value=float(value), ci_low=float(low),
                ci_high=float(high), setting=setting, split=split)  # fmt: skip


def _finite(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[np.isfinite(rows["value"].to_numpy(dtype=np.float64))]


def _choose(rows: pd.DataFrame, keys: list[str]) -> pd.Series | None:
    """The row of the highest value; ties to the lowest keys (deterministic). None if none."""
    rows = _finite(rows)
    if rows.empty:
        return None
    ordered = rows.sort_values(["value", *keys], ascending=[False] + [True] * len(keys),
                               kind="mergesort")  # fmt: skip
    return ordered.iloc[0]


def _match(table: pd.DataFrame, row: pd.Series, keys: list[str], **fixed) -> pd.DataFrame:
    """Rows of ``table`` equal to ``row`` on ``keys`` and to ``fixed`` (NaN matches NaN)."""
    sel = np.ones(len(table), dtype=bool)
    for key in keys:
        col, value = table[key], row[key]
        if isinstance(value, float) and np.isnan(value):
            sel &= col.isna().to_numpy()
        else:
            sel &= (col == value).to_numpy()
    for key, value in fixed.items():
        sel &= (table[key] == value).to_numpy()
    return table[sel]


def _test_row(section, label, table, chosen, keys, test, name, **fixed) -> dict | None:
    """The test-split row of ``table`` that matches the ``chosen`` setting on ``keys``."""
    hit = _match(table, chosen, keys, split=test, **fixed)
    if hit.empty:
        return None
    r = hit.iloc[0]
    return _row(section, label, r["value"], name, r.get("ci_low", np.nan),
                r.get("ci_high", np.nan), test)  # fmt: skip


def chosen_detection(det: pd.DataFrame, cal: str, statistic: str | None = None) -> pd.Series | None:
    """The (method, scale, statistic) row of the best calibration AUROC (what ``cxrgen apply``
    scores new images with; ``statistic``: among that one's rows only); None when there is
    none. Label-informed rows stay candidates: the summary of a label-informed run reports
    them, flagged."""
    auroc = det[(det["metric"] == "auroc") & (det["split"] == cal)]
    measured = auroc[(auroc["source"] == "measured") & (auroc["method"] != "classifier")]
    if statistic is not None:
        measured = measured[measured["statistic"] == statistic]
    return _choose(measured, ["method", "scale", "statistic"])


def chosen_severity(sev: pd.DataFrame, cal: str, score: str) -> pd.Series | None:
    """The (method, scale, feature_set) row of the best calibration Spearman of ``score``
    among the opacity images (the classifier baseline excluded); None when there is none."""
    rho = sev[(sev["metric"] == "spearman") & (sev["score"] == score) & (sev["split"] == cal)]
    rho = rho[(rho["method"] != "classifier") & (rho["subset"] == "opacity images")]
    return _choose(rho, ["method", "scale", "feature_set"])


def _detection(det: pd.DataFrame, cal: str, test: str) -> tuple[list[dict], pd.Series | None]:
    rows, auroc = [], det[det["metric"] == "auroc"]
    keys = ["method", "scale", "statistic"]
    best = chosen_detection(det, cal)
    if best is not None:
        name = setting_name(best["method"], best["scale"], best["statistic"])
        for metric in ("auroc", "ap"):
            row = _test_row("detection", f"{metric.upper()}, setting chosen on calibration",
                            det, best, keys, test, name, metric=metric)  # fmt: skip
            if row:
                rows.append(row)
        chosen = chosen_detection(det, cal, statistic="sum_abs")
        if chosen is not None:
            name = setting_name(chosen["method"], chosen["scale"], "sum_abs")
            row = _test_row("detection", "AUROC, the paper's sum of |difference|", det, chosen,
                            keys, test, name, metric="auroc")  # fmt: skip
            if row:
                rows.append(row)
    for _, r in auroc[(auroc["method"] == "classifier") & (auroc["split"] == test)].iterrows():
        rows.append(_row("detection", "AUROC, guidance classifier p(opacity) at t = 0",
                         r["value"], "classifier", r["ci_low"], r["ci_high"], test))  # fmt: skip
    for _, r in auroc[auroc["source"] != "measured"].iterrows():
        rows.append(_row("detection", f"AUROC, {r['method']} (published)", r["value"],
                         "published"))  # fmt: skip
    return rows, best


def _map_setting(r: pd.Series) -> str:
    return f"{setting_name(r['method'], r['scale'])}, {r['map']} map, smoothing {r['smoothing']:g}"


def _pixel(section, table, cal, test, best=None, subset=None) -> list[dict]:
    """Pixel AUROC / Dice (+ pointing game) on test of the (method, scale,) map and smoothing
    with the best calibration pixel AUROC (``best``: only that method and scale)."""
    if table.empty:
        return []
    pool = table[(table["metric"] == "pixel_auroc_pooled") & (table["split"] == cal)]
    if subset is not None:
        pool = pool[pool["subset"] == subset]
    if best is not None:
        pool = _match(pool, best, ["method", "scale"])
    keys = ["method", "scale", "map", "smoothing"]
    chosen = _choose(pool, keys)
    if chosen is None:
        return []
    name = _map_setting(chosen)
    out = []
    for metric in ("pixel_auroc_pooled", "dice", "pointing_game"):
        fixed = {"metric": metric} if subset is None else {"metric": metric, "subset": subset}
        row = _test_row(section, metric, table, chosen, keys, test, name, **fixed)
        if row:
            out.append(row)
    return out


def _ground_truth(gt: pd.DataFrame, cal: str, test: str) -> list[dict]:
    rows = _pixel("ground truth (phantoms)", gt, cal, test, subset="lesion images")
    if not rows:
        return rows
    aurocs = gt[(gt["metric"] == "pixel_auroc_pooled") & (gt["split"] == cal)]
    chosen = _choose(aurocs[aurocs["subset"] == "lesion images"],
                     ["method", "scale", "map", "smoothing"])  # fmt: skip
    faint = _test_row("ground truth (phantoms)", "pixel_auroc_pooled, fainter half", gt,
                      chosen, ["method", "scale", "map", "smoothing"], test,
                      _map_setting(chosen), metric="pixel_auroc_pooled",
                      subset="fainter half")  # fmt: skip
    if faint:
        rows.append(faint)
    for metric, subset in (("lesion_removed_fraction", "lesion images"),
                           ("change_outside_over_inside", "lesion images"),
                           ("cf_error_outside", "lesion images"),
                           ("cf_change", "normal images")):  # fmt: skip
        row = _test_row("ground truth (phantoms)", metric, gt, chosen, ["method", "scale"], test,
                        setting_name(chosen["method"], chosen["scale"]), metric=metric,
                        subset=subset, map="")  # fmt: skip
        if row:
            rows.append(row)
    return rows


def _severity(sev: pd.DataFrame, cal: str, test: str) -> list[dict]:
    rows = []
    if sev.empty:
        return rows
    keys = ["method", "scale", "feature_set"]
    for score in ("extent_total", "opacity_total"):
        chosen = chosen_severity(sev, cal, score)
        if chosen is not None:
            name = f"{setting_name(chosen['method'], chosen['scale'])}, {chosen['feature_set']}"
            for metric, subset, label in (
                ("spearman", "opacity images", f"Spearman {score}, opacity images"),
                ("mae", "opacity images", f"MAE {score}, opacity images"),
                ("spearman", "all images", f"Spearman {score}, all images"),
            ):
                row = _test_row("severity", label, sev, chosen, keys, test, name,
                                metric=metric, score=score, subset=subset)  # fmt: skip
                if row:
                    rows.append(row)
        base = sev[(sev["method"] == "classifier") & (sev["score"] == score)
                   & (sev["split"] == test) & (sev["subset"] == "opacity images")
                   & (sev["metric"] == "spearman")]  # fmt: skip
        for _, r in base.iterrows():
            label = f"Spearman {score}, opacity images, classifier baseline"
            rows.append(_row("severity", label, r["value"], r["feature_set"], r["ci_low"],
                             r["ci_high"], test))  # fmt: skip
    return rows


def summary_table(
    tables: dict[str, pd.DataFrame],
    calibration_split: str = "calibration",
    test_split: str = "test",
    label_informed: bool = False,
) -> pd.DataFrame:
    """The headline numbers: each setting chosen on ``calibration_split`` (highest value of the
    section's own metric there), each number from ``test_split``.

    Detection: (method, scale, statistic) by calibration AUROC; the paper's statistic
    (sum_abs) by its own best calibration AUROC. Localisation (boxes): the map and smoothing
    of the detection setting with the best calibration pixel AUROC. Ground truth: (method,
    scale, map, smoothing) by calibration lesion pixel AUROC; Dice at the calibration
    threshold. Severity: (method, scale, reading) by calibration cross-validated Spearman
    among opacity images, reported among opacity images (Spearman, MAE) and all images.
    A label-informed inversion has no headline: only the inversion, ground truth and
    Table 2 rows, under a section that says why.
    """
    cal, test = calibration_split, test_split
    inv, t2 = tables["inversion"], tables["table2"]
    if label_informed:
        rows = [_row("label-informed", LABEL_INFORMED_NOTE, np.nan)]
        rows += [dict(r, section="label-informed: ground truth")
                 for r in _ground_truth(tables["ground_truth"], cal, test)]  # fmt: skip
        best = None
    else:
        rows, best = _detection(tables["detection"], cal, test)
        if best is not None:
            rows += _pixel("localisation (boxes)", tables["localisation"], cal, test, best)
        rows += _ground_truth(tables["ground_truth"], cal, test)
        rows += _severity(tables["severity"], cal, test)
    overall = inv[(inv["class_name"] == "all") & (inv["split"] == test)]
    if not overall.empty:
        rows.append(_row("inversion", "reconstruction PSNR (dB), median",
                         overall["psnr_median"].iloc[0], split=test))  # fmt: skip
    if best is not None:
        sel = _match(t2, best, ["method", "scale"], split=test)
        for _, r in sel.iterrows():
            metric = f"mean sum of |difference|, {r['class_name']} ({r['units']})"
            rows.append(_row("table 2", metric, r["mean"],
                             setting_name(best["method"], best["scale"]), split=test))  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)


def write_summary_markdown(path: str | Path, summary: pd.DataFrame, meta: dict) -> None:
    """The summary as a markdown page (one table per section)."""
    lines = [
        "# Evaluation summary",
        "",
        f"Inversion: {meta.get('steps')} DDIM steps to depth {meta.get('depth')}, "
        f"conditioning {meta.get('conditioning')}, splits {meta.get('splits')}. Every "
        "setting below was chosen on the calibration split; every number is from the test "
        "split, with a 95% interval that resamples patients.",
        "",
    ]
    for section, group in summary.groupby("section", sort=False):
        lines += [f"## {section}", ""]
        shown = group.drop(columns="section").copy()
        for column in ("value", "ci_low", "ci_high"):
            shown[column] = shown[column].map(lambda v: "" if np.isnan(v) else f"{v:.3f}")
        lines += [shown.to_markdown(index=False), ""]
    io.write_text(path, "\n".join(lines))
