"""The Med-StyleGAN2 paper's Table 1 and a figure with this run's numbers beside it.

Paper (COVID-QU-Ex, 8000 generated images per domain; the image size of the evaluation is
not stated): FID per target domain Normal 55.796, COVID-19 62.599, Non-COVID 81.230; LPIPS
0.199 / 0.222 / 0.239; baselines GAN FID 2446.535, DCGAN FID 153.014; LPIPS of other chest
X-ray models (other data sets, as quoted by the paper) CycleGAN 0.099, StarGAN 0.212, RSGAN
0.315, SDGAN 0.514.

The authors evaluated with StarGAN v2's metrics code: FID in torchvision's ImageNet Inception
feature space (ImageNet normalisation, 299 x 299), per task, then the mean over source domains
of the latent-guided translations; LPIPS: an AlexNet LPIPS with the lpips package's input
scaling, per task, then the mean over source domains.
So a value of Table 1 is set only beside a row of the same protocol (:data:`TABLE1_PROTOCOL`:
the metric made by that network, mode 'latent', source 'mean'; DCGAN: the pooled 'all' row);
pytorch-fid's FID (TF FID Inception) and the chest X-ray FID are never matched with it.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from cxrgen import io
from cxrgen.data.classes import COVID_19, NON_COVID, NORMAL
from cxrgen.metrics.fid import STARGAN_V2_NETWORK
from cxrgen.metrics.lpips_diversity import LPIPS_NETWORK
from cxrgen.plotting import pyplot

PAPER_PER_DOMAIN = {
    "fid_stargan_v2": {NORMAL: 55.796, COVID_19: 62.599, NON_COVID: 81.230},
    "lpips": {NORMAL: 0.199, COVID_19: 0.222, NON_COVID: 0.239},
}
PAPER_BASELINES = {
    "fid_stargan_v2": {"DCGAN": 153.014, "GAN": 2446.535},
    "lpips": {"CycleGAN": 0.099, "StarGAN": 0.212, "RSGAN": 0.315, "SDGAN": 0.514},
}
# metric -> the network (protocol) whose rows Table 1 may stand beside
TABLE1_PROTOCOL = {"fid_stargan_v2": STARGAN_V2_NETWORK, "lpips": LPIPS_NETWORK}
TABLE1_MODE = "latent"
_ALIASES = {"normal": NORMAL, "covid19": COVID_19, "noncovid": NON_COVID}


def paper_domain(name: str) -> str | None:
    """The paper's name of a domain ('Non-COVID19' and 'non_covid' -> 'Non-COVID'), or None."""
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    return _ALIASES.get(key) or _ALIASES.get(key.removesuffix("19"))


def paper_comparison(table: pd.DataFrame) -> pd.DataFrame:
    """This run's rows that Table 1 can be compared with, each with the paper's value: the
    per-target means over source domains of latent-guided translations and the pooled DCGAN
    row, of a metric made by the network of :data:`TABLE1_PROTOCOL`. Columns: those of the
    table, then ``paper`` (the value) and ``paper_entry`` (what it is in Table 1)."""
    matched = []
    for row in table.itertuples(index=False):
        if TABLE1_PROTOCOL.get(row.metric) != row.network:
            continue
        if row.mode == TABLE1_MODE and row.source == "mean":
            domain = paper_domain(row.target)
            value = PAPER_PER_DOMAIN[row.metric].get(domain) if domain else None
            entry = f"Med-StyleGAN2, {domain}"
        elif row.mode == "sample" and row.target == "all":
            value = PAPER_BASELINES[row.metric].get("DCGAN")
            entry = "DCGAN baseline"
        else:
            continue
        if value is not None:
            matched.append({**row._asdict(), "paper": value, "paper_entry": entry})
    return pd.DataFrame(matched, columns=[*table.columns, "paper", "paper_entry"])


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


PANELS = (
    ("fid_stargan_v2", "FID, torchvision Inception as StarGAN v2 (lower is better)"),
    ("fid", "FID, pytorch-fid (not comparable with Table 1)"),
    ("lpips", "LPIPS diversity (higher is better)"),
    ("fid_cxr", "FID, CXR-classifier features (this run only)"),
)


def _paper_cells(matched: pd.DataFrame, metric: str, targets: list[str]):
    """Categories and the paper's cells of one panel: only where a row of this run matched."""
    mine = matched[matched["metric"] == metric]
    cells = []
    for t in targets:
        hit = mine[(mine["mode"] == TABLE1_MODE) & (mine["target"] == t)]
        cells.append((float(hit["paper"].iloc[0]), "ok") if len(hit) else None)
    cats = list(targets)
    if metric != "lpips":
        cats.append("DCGAN (all)")
        hit = mine[mine["target"] == "all"]
        cells.append((float(hit["paper"].iloc[0]), "ok") if len(hit) else None)
    if not mine.empty:  # the paper's other models stand beside the matched rows only
        others = {b: v for b, v in PAPER_BASELINES.get(metric, {}).items() if b != "DCGAN"}
        cats += list(others)
        cells += [(v, "ok") for v in others.values()]
    return cats, cells


def write_comparison_figure(path: str | Path, table: pd.DataFrame) -> None:
    """One panel per metric; the paper's Table 1 values appear only beside the rows of this run
    made by the same protocol (:func:`paper_comparison`), never beside pytorch-fid's FID."""
    plt = pyplot()

    targets = list(dict.fromkeys(table.loc[table["source"] == "mean", "target"]))
    targets = [t for t in targets if t != "mean"]
    matched = paper_comparison(table)
    fig, axes = plt.subplots(2, 2, figsize=(14, 9), dpi=120)
    for ax, (metric, title) in zip(axes.flat, PANELS, strict=True):
        cats, paper = _paper_cells(matched, metric, targets)
        series = {}
        if any(paper):
            series["paper (Table 1)"] = ("0.6", paper)
        for mode, color in (("latent", "C0"), ("reference", "C1")):
            cells = [_value(table, metric, mode, "mean", t) for t in targets]
            cells = [c if c[1] is not None else None for c in cells]
            if any(cells):
                label = f"this run, {mode}-guided"
                if any(paper) and mode != TABLE1_MODE:
                    label += " (not in Table 1)"
                series[label] = (color, cells + [None] * (len(cats) - len(cells)))
        dcgan = _value(table, metric, "sample", "-", "all")
        if dcgan[1] is not None and metric != "lpips":
            cells = [None] * len(cats)
            cells[len(targets)] = dcgan
            series["this run, DCGAN"] = ("C2", cells)
        if not any(cell for _, cells in series.values() for cell in cells):
            ax.text(0.5, 0.5, f"{metric} not computed", ha="center", transform=ax.transAxes)
        _bars(ax, cats, series, log_scale=metric != "lpips")
        networks = sorted(set(table.loc[table["metric"] == metric, "network"]))
        if metric in TABLE1_PROTOCOL and networks and not any(paper):
            title += "\n(not Table 1's protocol: paper not shown)"
        subtitle = "; ".join(networks)
        ax.set_title(f"{title}\n{subtitle}" if subtitle else title, fontsize=9)
    statuses = sorted(set(table["status"]) - {"ok"})
    note = f" (status: {', '.join(statuses)})" if statuses else ""
    fig.suptitle(f"Med-StyleGAN2 evaluation: this run vs the paper{note}", fontsize=11)
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
