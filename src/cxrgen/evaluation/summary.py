"""The one-page summary of an evaluation: headline numbers picked from the metric tables.

Rows: section, metric, value, ci_low, ci_high, setting (which method / scale / statistic the
number belongs to). The best detection setting (highest AUROC) is named, and the
localisation numbers are those of its method and scale (with the anomaly map that localises
best), so the page reads as one result.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cxrgen import io
from cxrgen.evaluation.detection import best_setting

COLUMNS = ["section", "metric", "value", "ci_low", "ci_high", "setting"]


def setting_name(method, scale, statistic=None) -> str:
    """'cfg 3', 'stargan 0', 'cfg 1 sum_abs'; the method alone where the scale is missing."""
    parts = [str(method)]
    if scale is not None and not (isinstance(scale, float | np.floating) and np.isnan(scale)):
        parts.append(f"{float(scale):g}")
    if statistic:
        parts.append(str(statistic))
    return " ".join(parts)


def _row(section, metric, value, setting="", low=np.nan, high=np.nan) -> dict:
    return dict(section=section, metric=metric, value=float(value), ci_low=float(low),
                ci_high=float(high), setting=setting)  # fmt: skip


def _detection(det: pd.DataFrame) -> tuple[list[dict], pd.Series | None]:
    rows, auroc = [], det[det["metric"] == "auroc"]
    measured = auroc[(auroc["source"] == "measured") & (auroc["method"] != "classifier")]
    if measured["value"].notna().any():
        best = best_setting(det)
        rows.append(_row("detection", "AUROC, best setting", best["value"],
                         setting_name(best["method"], best["scale"], best["statistic"]),
                         best["ci_low"], best["ci_high"]))  # fmt: skip
        paper = measured[measured["statistic"] == "sum_abs"]
        if paper["value"].notna().any():
            r = paper.loc[paper["value"].idxmax()]
            rows.append(_row("detection", "AUROC, paper's sum of absolute difference", r["value"],
                             setting_name(r["method"], r["scale"], "sum_abs"), r["ci_low"],
                             r["ci_high"]))  # fmt: skip
    else:
        best = None
    for _, r in auroc[auroc["method"] == "classifier"].iterrows():
        rows.append(_row("detection", "AUROC, guidance classifier p(opacity) at t = 0",
                         r["value"], "classifier", r["ci_low"], r["ci_high"]))  # fmt: skip
    for _, r in auroc[auroc["source"] != "measured"].iterrows():
        rows.append(_row("detection", f"AUROC, {r['method']} (published)", r["value"],
                         "published"))  # fmt: skip
    return rows, best


def _pick(
    table: pd.DataFrame, method, scale, metric, subset=None, pixel_map=None
) -> pd.Series | None:
    sel = table[(table["method"] == method) & (table["scale"] == scale)]
    sel = sel[sel["metric"] == metric]
    if subset is not None:
        sel = sel[sel["subset"] == subset]
    if pixel_map is not None:
        sel = sel[sel["map"] == pixel_map]
    return None if sel.empty else sel.iloc[0]


def _best(rows: pd.DataFrame) -> pd.Series | None:
    """The row of the highest value (None when there is none)."""
    return rows.loc[rows["value"].idxmax()] if rows["value"].notna().any() else None


def _map_setting(method, scale, pixel_map) -> str:
    return f"{setting_name(method, scale)}, {pixel_map} map"


def summary_table(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    rows, best = _detection(tables["detection"])
    loc, gt, sev = tables["localisation"], tables["ground_truth"], tables["severity"]
    if best is not None:
        method, scale = best["method"], best["scale"]
        own = loc[(loc["method"] == method) & (loc["scale"] == scale)]
        top = _best(own[own["metric"] == "pixel_auroc_pooled"])
        if top is not None:
            for metric in ("pixel_auroc_pooled", "pointing_game", "dice"):
                r = _pick(loc, method, scale, metric, pixel_map=top["map"])
                rows.append(_row("localisation (boxes)", metric, r["value"],
                                 _map_setting(method, scale, top["map"])))  # fmt: skip
    if not gt.empty:
        aurocs = gt[(gt["metric"] == "pixel_auroc_pooled") & (gt["subset"] == "lesion images")]
        r = _best(aurocs)
        if r is not None:
            method, scale, pixel_map = r["method"], r["scale"], r["map"]
            name = _map_setting(method, scale, pixel_map)
            rows.append(_row("ground truth (phantoms)", "lesion pixel AUROC, best setting",
                             r["value"], name))  # fmt: skip
            p = _pick(gt, method, scale, "dice", "lesion images", pixel_map)
            if p is not None:
                rows.append(_row("ground truth (phantoms)", "dice", p["value"], name))
            for metric, subset in (("lesion_removed_fraction", "lesion images"),
                                   ("cf_error_outside", "lesion images"),
                                   ("cf_change", "normal images")):  # fmt: skip
                p = _pick(gt, method, scale, metric, subset)
                if p is not None:
                    rows.append(_row("ground truth (phantoms)", metric, p["value"],
                                     setting_name(method, scale)))  # fmt: skip
    if not sev.empty:
        rho = sev[sev["metric"] == "spearman"]
        for score in ("extent_total", "opacity_total"):
            per = rho[rho["score"] == score]
            baseline = per["feature_set"].str.startswith("classifier probability")
            maps = per[~baseline]
            if maps["value"].notna().any():
                r = maps.loc[maps["value"].idxmax()]
                name = f"{setting_name(r['method'], r['scale'])}, {r['feature_set']}"
                rows.append(_row("severity", f"Spearman {score}, best anomaly map", r["value"],
                                 name))  # fmt: skip
            for _, r in per[baseline].iterrows():
                rows.append(_row("severity", f"Spearman {score}, classifier baseline",
                                 r["value"], r["feature_set"]))  # fmt: skip
    inv = tables["inversion"]
    overall = inv[inv["class_name"] == "all"]
    if not overall.empty:
        rows.append(_row("inversion", "reconstruction PSNR (dB), median",
                         overall["psnr_median"].iloc[0]))  # fmt: skip
    if best is not None:
        t2 = tables["table2"]
        sel = t2[(t2["method"] == best["method"]) & (t2["scale"] == best["scale"])]
        for _, r in sel.iterrows():
            metric = f"mean sum of absolute difference, {r['class_name']}"
            setting = setting_name(best["method"], best["scale"])
            rows.append(_row("table 2", metric, r["mean"], setting))
    return pd.DataFrame(rows, columns=COLUMNS)


def write_summary_markdown(path: str | Path, summary: pd.DataFrame, meta: dict) -> None:
    """The summary as a markdown page (one table per section)."""
    lines = [
        "# Evaluation summary",
        "",
        f"Inversion: {meta.get('steps')} DDIM steps to depth {meta.get('depth')}, "
        f"conditioning {meta.get('conditioning')}, split {meta.get('split')}.",
        "",
    ]
    for section, group in summary.groupby("section", sort=False):
        lines += [f"## {section}", ""]
        shown = group.drop(columns="section").copy()
        for column in ("value", "ci_low", "ci_high"):
            shown[column] = shown[column].map(lambda v: "" if np.isnan(v) else f"{v:.3f}")
        lines += [shown.to_markdown(index=False), ""]
    io.write_text(path, "\n".join(lines))
