"""The Med-StyleGAN2 paper's Table 1 and a figure with this run's numbers beside it.

Paper (COVID-QU-Ex, 256 px, 8000 generated images per domain): FID per target domain
Normal 55.796, COVID-19 62.599, Non-COVID 81.230; LPIPS 0.199 / 0.222 / 0.239; baselines
GAN FID 2446.535, DCGAN FID 153.014; LPIPS of other chest X-ray models (other data sets, as
quoted by the paper) CycleGAN 0.099, StarGAN 0.212, RSGAN 0.315, SDGAN 0.514.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from cxrgen import io

PAPER_PER_DOMAIN = {
    "fid": {"Normal": 55.796, "COVID-19": 62.599, "Non-COVID": 81.230},
    "lpips": {"Normal": 0.199, "COVID-19": 0.222, "Non-COVID": 0.239},
}
PAPER_BASELINES = {
    "fid": {"DCGAN": 153.014, "GAN": 2446.535},
    "lpips": {"CycleGAN": 0.099, "StarGAN": 0.212, "RSGAN": 0.315, "SDGAN": 0.514},
}
_ALIASES = {"normal": "Normal", "covid19": "COVID-19", "noncovid": "Non-COVID"}


def paper_domain(name: str) -> str | None:
    """The paper's name of a domain ('Non-COVID19' and 'non_covid' -> 'Non-COVID'), or None."""
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    return _ALIASES.get(key) or _ALIASES.get(key.removesuffix("19"))


def _value(table: pd.DataFrame, metric: str, mode: str, source: str, target: str):
    sub = table[
        (table["metric"] == metric)
        & (table["mode"] == mode)
        & (table["source"] == source)
        & (table["target"] == target)
    ]
    if sub.empty:
        return None, None
    return float(sub["value"].iloc[0]), str(sub["status"].iloc[0])


def _bars(ax, categories, series, log_scale=False):
    """Grouped bars; series: label -> (color, [(value, status) or None per category])."""
    width = 0.8 / max(1, len(series))
    for j, (label, (color, cells)) in enumerate(series.items()):
        for i, cell in enumerate(cells):
            if cell is None:
                continue
            value, status = cell
            x = i - 0.4 + width * (j + 0.5)
            if value is None or not np.isfinite(value):
                ax.text(
                    x,
                    0.02,
                    status or "n/a",
                    rotation=90,
                    ha="center",
                    va="bottom",
                    fontsize=6,
                    transform=ax.get_xaxis_transform(),
                )
                continue
            ax.bar(
                x,
                value,
                width,
                color=color,
                label=label,
                hatch="//" if status == "random_weights" else None,
                edgecolor="white",
            )
            ax.text(x, value, f"{value:.4g}", ha="center", va="bottom", fontsize=6)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    if unique:
        ax.legend(unique.values(), unique.keys(), fontsize=7, frameon=False)
    ax.set_xticks(range(len(categories)), categories, rotation=20, fontsize=8)
    if log_scale:
        ax.set_yscale("log")
    ax.grid(axis="y", alpha=0.3)


def write_comparison_figure(path: str | Path, table: pd.DataFrame) -> None:
    """FID, LPIPS and FID in chest-X-ray feature space: the paper's rows beside this run's."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    targets = list(dict.fromkeys(table.loc[table["source"] == "mean", "target"]))
    targets = [t for t in targets if t != "mean"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), dpi=120)
    for ax, metric, title in (
        (axes[0], "fid", "FID, Inception features (lower is better)"),
        (axes[1], "lpips", "LPIPS diversity (higher is better)"),
        (axes[2], "fid_cxr", "FID, CXR-classifier features (this run only)"),
    ):
        baselines = PAPER_BASELINES.get(metric, {})
        cats = (
            targets
            + (["DCGAN (all)"] if metric != "lpips" else [])
            + [b for b in baselines if b != "DCGAN"]
        )
        paper = [
            (PAPER_PER_DOMAIN[metric].get(paper_domain(t) or ""), "ok")
            if metric in PAPER_PER_DOMAIN and paper_domain(t)
            else None
            for t in targets
        ]
        if metric != "lpips":
            paper.append((baselines["DCGAN"], "ok") if "DCGAN" in baselines else None)
        paper += [(v, "ok") for b, v in baselines.items() if b != "DCGAN"]
        series = {}
        if metric in PAPER_PER_DOMAIN:
            series["paper (Table 1)"] = ("0.6", paper)
        for mode, color in (("latent", "C0"), ("reference", "C1")):
            cells = [_value(table, metric, mode, "mean", t) for t in targets]
            cells = [c if c[1] is not None else None for c in cells]
            if any(cells):
                series[f"this run, {mode}-guided"] = (
                    color,
                    cells + [None] * (len(cats) - len(cells)),
                )
        dcgan = _value(table, metric, "sample", "-", "all")
        if dcgan[1] is not None and metric != "lpips":
            cells = [None] * len(cats)
            cells[len(targets)] = dcgan
            series["this run, DCGAN"] = ("C2", cells)
        if not any(cell for _, cells in series.values() for cell in cells):
            ax.text(0.5, 0.5, f"{metric} not computed", ha="center", transform=ax.transAxes)
        _bars(ax, cats, series, log_scale=metric != "lpips")
        ax.set_title(title, fontsize=10)
    statuses = sorted(set(table["status"]) - {"ok"})
    note = f" (status: {', '.join(statuses)})" if statuses else ""
    fig.suptitle(f"Med-StyleGAN2 evaluation: this run vs the paper{note}", fontsize=11)
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
