"""A grid of phantom images for people: does it look like a chest radiograph?"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
from PIL import Image

from cxrgen import io
from cxrgen.data.classes import LUNG_OPACITY, NORMAL, NOT_NORMAL
from cxrgen.data.intensity import to_unit_interval

_SHORT = {NORMAL: "Normal", LUNG_OPACITY: "Opacity", NOT_NORMAL: "Not normal"}


def _round_robin(df: pd.DataFrame, key: str, n: int) -> pd.DataFrame:
    """Up to ``n`` rows taking turns between the values of ``key`` (in manifest order)."""
    groups = [g for _, g in df.groupby(key, sort=True)]
    picked: list[int] = []
    depth = 0
    while len(picked) < min(n, len(df)):
        for g in groups:
            if depth < len(g) and len(picked) < n:
                picked.append(g.index[depth])
        depth += 1
    return df.loc[picked]


def contact_sheet(phantom_dir: str | os.PathLike, png_path: str | os.PathLike, n: int = 24) -> None:
    """Draw ``n`` images of a phantom set (RSNA, RALO or COVID-QU-Ex layout) into ``png_path``.

    RSNA and RALO sheets show the decoded DICOM (as preprocessing normalises it) with
    the label boxes (RSNA), class, storage and RALO totals; COVID-QU-Ex sheets show
    the PNG with its lung-mask outline.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    root = Path(phantom_dir)
    manifest = pd.read_parquet(root / "manifest.parquet")
    rsna = "corrupt" in manifest.columns
    if rsna:
        valid = manifest[~manifest["corrupt"]].reset_index(drop=True)
        rows = _round_robin(valid, "class_name", n)
        labels_csv, boxes = root / "stage_2_train_labels.csv", None
        if labels_csv.is_file():  # the RALO layout has scores, no boxes
            labels = pd.read_csv(labels_csv)
            boxes = labels[labels["Target"] == 1].groupby("patientId")
    else:
        rows = _round_robin(manifest.reset_index(drop=True), "class_name", n)
    ncols = min(6, max(len(rows), 1))
    nrows = max(1, math.ceil(len(rows) / ncols))
    fig = Figure(figsize=(2.3 * ncols, 2.6 * nrows), dpi=110)
    FigureCanvasAgg(fig)
    for i, (_, row) in enumerate(rows.iterrows()):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.set_axis_off()
        if rsna:
            ds = pydicom.dcmread(root / row["file"])
            ax.imshow(to_unit_interval(ds, ds.pixel_array), cmap="gray", vmin=0, vmax=1)
            if boxes is not None and row["image_id"] in boxes.groups:
                for _, b in boxes.get_group(row["image_id"]).iterrows():
                    ax.add_patch(
                        Rectangle(
                            (b["x"] - 0.5, b["y"] - 0.5),
                            b["width"],
                            b["height"],
                            fill=False,
                            edgecolor="red",
                            linewidth=0.8,
                        )
                    )
            pi = "M1" if row["photometric"] == "MONOCHROME1" else "M2"
            ax.set_title(
                f"{_SHORT.get(row['class_name'], row['class_name'])} E{row['extent_total']} "
                f"O{row['opacity_total']}\n{row['transfer_syntax']} {row['bits_stored']}b {pi} "
                f"{row['rows']}x{row['cols']}",
                fontsize=6.5,
            )
        else:
            img = np.asarray(Image.open(root / row["image"]), dtype=np.float32) / 255.0
            mask = np.asarray(Image.open(root / row["mask"])) > 0
            ax.imshow(img, cmap="gray", vmin=0, vmax=1)
            ax.contour(mask, levels=[0.5], colors="cyan", linewidths=0.4, alpha=0.6)
            ax.set_title(
                f"{row['split']} {row['class_name']}\n"
                f"E{row['extent_total']} O{row['opacity_total']}",
                fontsize=6.5,
            )
    fig.tight_layout(pad=0.3)
    with io.atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png")
