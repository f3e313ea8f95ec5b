"""The evaluation's figures: one function per figure, each drawing tables or arrays to a PNG.

* :func:`fig3_grid`: the paper's Fig. 3 (originals, latents, counterfactuals, anomaly maps),
  its rows picked by :func:`choose_rows` and labelled by :func:`row_labels`;
* :func:`fig4_spectra`: the paper's Fig. 4 (high- and low-pass filtered original and
  counterfactual, radially averaged power spectra);
* :func:`gradcam_panel`: images with the classifier's Grad-CAM overlaid.

The metric plots (ROC / PR, AUROC against scale, severity) are in
:mod:`cxrgen.evaluation.metric_plots`, which shares this module's style.

Every function takes the tables of :mod:`cxrgen.evaluation.evaluate` (or arrays) and a path, and
writes the PNG atomically (:func:`cxrgen.io.atomic_path`) with matplotlib's Agg backend.
:func:`cxrgen.plotting.write_labelled_grid` draws grey [0, 1] images only; these figures
need colour maps, signed and per-image ranges and colour bars, so they draw their own axes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize

from cxrgen import io
from cxrgen.config import check
from cxrgen.data.classes import HEALTHY_CLASS, POSITIVE_CLASS
from cxrgen.errors import DataError
from cxrgen.evaluation.evaluation_summary import setting_name
from cxrgen.metrics.fourier import highpass, lowpass
from cxrgen.plotting import pyplot

log = logging.getLogger(__name__)

DPI = 130
STYLE = {
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "figure.titlesize": 11,
}
OUTLINE_COLOUR = "tab:cyan"  # the true lesion outline in Fig. 3
ANOMALY_CMAP = "inferno"
CAM_CMAP = "jet"
# what the scale of each method means (x axis of auroc_vs_scale)
SCALE_MEANING = {
    "cfg": "classifier-free guidance weight w",
    "cg": "classifier guidance scale s",
    "stargan": "style mix w (0 = own style)",
}


@contextlib.contextmanager
def png_figure(path: str | Path, figsize: tuple[float, float]) -> Iterator:
    """A constrained-layout figure in the report style, saved atomically to ``path``, closed."""
    plt = pyplot()
    with plt.rc_context(STYLE):
        fig = plt.figure(figsize=figsize, dpi=DPI, layout="constrained")
        try:
            yield fig
            with io.atomic_path(path) as tmp:
                fig.savefig(tmp, dpi=DPI)
        finally:
            plt.close(fig)


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _rows_of(array, rows: np.ndarray, name: str) -> np.ndarray:
    """The given rows of an (M, H, W) array-like (memmap, RowView) as float32."""
    if len(np.shape(array)) != 3:
        raise DataError(f"{name} must be (M, H, W), got shape {np.shape(array)}")
    if rows.min() < 0 or rows.max() >= len(array):
        raise DataError(f"{name} has {len(array)} rows; asked for rows {rows.tolist()}")
    return np.asarray(array[rows], dtype=np.float32)


# --- Fig. 3 --------------------------------------------------------------------------------


def choose_rows(
    scores: pd.DataFrame,
    positive_class: str = POSITIVE_CLASS,
    n: int = 3,
    negative_class: str = HEALTHY_CLASS,
    statistic: str = "sum_abs",
) -> list[int]:
    """Rows of Fig. 3: the ``n`` largest and ``n`` smallest positives, one median negative.

    ``scores``: one setting's scores.parquet (columns row, class_name, ``statistic``). Returns
    the ``row`` values: the ``n`` images of ``positive_class`` with the largest ``statistic``
    (largest first), then the ``n`` with the smallest (smallest first; never an image twice
    when there are fewer than 2n), then the ``negative_class`` image closest to the median
    of its class (omitted, with a warning, where there is none). Ties go to the lower row.
    """
    check(n >= 1, f"n must be >= 1, got {n}")
    missing = [c for c in ("row", "class_name", statistic) if c not in scores.columns]
    if missing:
        raise DataError(f"scores table lacks columns {missing}")
    if scores["row"].duplicated().any():
        raise DataError("scores has a row twice: pass the table of one method and scale")
    values = scores[["row", "class_name", statistic]].rename(columns={statistic: "_v"})
    if not np.isfinite(values["_v"].to_numpy(dtype=np.float64)).all():
        raise DataError(f"{statistic} has non-finite values")
    pos = values[values["class_name"] == positive_class]
    if pos.empty:
        raise DataError(f"no image of class {positive_class!r} to show")
    largest = pos.sort_values(["_v", "row"], ascending=[False, True], kind="mergesort")
    top = largest["row"].head(n).tolist()
    smallest = pos.sort_values(["_v", "row"], ascending=[True, True], kind="mergesort")
    bottom = [r for r in smallest["row"] if r not in top][:n]
    picks = [int(r) for r in top + bottom]
    neg = values[values["class_name"] == negative_class]
    if neg.empty:
        log.warning("no image of class %r: Fig. 3 shows no negative row", negative_class)
        return picks
    distance = (neg["_v"] - neg["_v"].median()).abs()
    median = neg.assign(_d=distance).sort_values(["_d", "row"], kind="mergesort")
    return [*picks, int(median["row"].iloc[0])]


def row_labels(
    scores: pd.DataFrame, rows: Sequence[int], statistic: str = "sum_abs", setting: str = ""
) -> list[str]:
    """'Lung Opacity, row 12\\nsum_abs (cfg 3) 53.4' per chosen row of one setting's scores."""
    table = scores.set_index("row")
    where = f" ({setting})" if setting else ""
    return [
        f"{table.at[r, 'class_name']}, row {r}\n{statistic}{where} {table.at[r, statistic]:.1f}"
        for r in rows
    ]


def fig3_grid(
    path: str | Path,
    originals,
    latents,
    counterfactuals_by_setting: Mapping[str, np.ndarray],
    absdiff_by_setting: Mapping[str, np.ndarray],
    rows: Sequence[int],
    row_labels: Sequence[str],
    title: str = "Healthy counterfactuals and anomaly maps |original - counterfactual|",
    lesion_masks=None,
) -> None:
    """The paper's Fig. 3: per chosen row the original, its latent, and per setting the
    counterfactual and its anomaly map.

    ``lesion_masks`` (phantoms: the true lesion masks, indexed like the originals) draws each
    lesion's outline on the original, every counterfactual and every map, so a reader sees
    whether the opacity is gone from the counterfactual and where the map lies.

    ``originals``, ``latents`` and every array of the two mappings (setting name -> array,
    e.g. 'cfg 3') are (M, H, W) array-likes indexed by the inversion's rows; only ``rows``
    are read. Originals and counterfactuals are shown in [0, 1]; each latent with its own
    minimum and maximum (printed under it, model units); the anomaly maps of one setting
    share one colour scale from 0 to their largest value over the shown rows, with a bar.
    """
    settings = list(counterfactuals_by_setting)
    check(len(settings) >= 1, "fig3_grid needs at least one setting")
    check(
        set(settings) == set(absdiff_by_setting),
        f"settings of counterfactuals {settings} and anomaly maps {list(absdiff_by_setting)} "
        "differ",
    )
    index = np.asarray([int(r) for r in rows], dtype=np.int64)
    check(len(index) >= 1, "fig3_grid needs at least one row")
    check(len(row_labels) == len(index), f"{len(row_labels)} labels for {len(index)} rows")
    orig = _rows_of(originals, index, "originals")
    lat = _rows_of(latents, index, "latents")
    cfs = {
        s: _rows_of(counterfactuals_by_setting[s], index, f"{s} counterfactuals") for s in settings
    }
    maps = {s: _rows_of(absdiff_by_setting[s], index, f"{s} anomaly maps") for s in settings}
    outlines = None if lesion_masks is None else _rows_of(lesion_masks, index, "lesion masks")
    for name, array in (("latents", lat), *cfs.items(), *maps.items()):
        if array.shape != orig.shape:
            raise DataError(f"{name} rows have shape {array.shape}, originals {orig.shape}")
    n_rows, n_cols = len(index), 2 + 2 * len(settings)
    cell = 1.55
    with png_figure(path, (n_cols * cell + 0.6 * len(settings) + 0.8, n_rows * cell + 1.0)) as fig:
        fig.suptitle(title)
        axes = fig.subplots(n_rows, n_cols, squeeze=False)
        for r in range(n_rows):
            axes[r, 0].imshow(orig[r], cmap="gray", vmin=0, vmax=1)
            lo, hi = float(lat[r].min()), float(lat[r].max())
            axes[r, 1].imshow(lat[r], cmap="gray", vmin=lo, vmax=hi)
            axes[r, 1].set_xlabel(f"[{lo:.2f}, {hi:.2f}]", fontsize=8, labelpad=1)
            axes[r, 0].set_ylabel(row_labels[r], fontsize=8)
        axes[0, 0].set_title("original\n(intensity 0-1)")
        axes[0, 1].set_title("latent x_T\n(own min-max)")
        for k, setting in enumerate(settings):
            c = 2 + 2 * k
            vmax = max(float(maps[setting].max()), 1e-6)
            for r in range(n_rows):
                axes[r, c].imshow(cfs[setting][r], cmap="gray", vmin=0, vmax=1)
                shown = axes[r, c + 1].imshow(
                    maps[setting][r], cmap=ANOMALY_CMAP, vmin=0, vmax=vmax
                )
            axes[0, c].set_title(f"{setting}\ncounterfactual")
            axes[0, c + 1].set_title(f"{setting}\n|difference|")
            bar = fig.colorbar(shown, ax=axes[:, c + 1], shrink=0.6, aspect=30, pad=0.02)
            bar.set_label(f"|difference|, {setting} (intensity)")
        if outlines is not None and outlines.any():
            for r in range(n_rows):
                if outlines[r].any():
                    for c in [0, *range(2, n_cols)]:
                        axes[r, c].contour(outlines[r], levels=[0.5], colors=OUTLINE_COLOUR,
                                           linewidths=0.6)  # fmt: skip
            fig.text(0.01, 0.01, "outline: the true lesion mask", fontsize=8,
                     color=OUTLINE_COLOUR)  # fmt: skip
        for ax in axes.ravel():
            _bare(ax)


# --- Fig. 4 --------------------------------------------------------------------------------


def fig4_spectra(
    path: str | Path,
    original: np.ndarray,
    counterfactual: np.ndarray,
    cutoff: float,
    curves: pd.DataFrame,
    setting_label: str = "counterfactual",
    title: str | None = None,
) -> None:
    """The paper's Fig. 4: one image and its counterfactual split into frequency bands, and
    the radially averaged power spectra of every setting.

    ``original`` and ``counterfactual``: (H, W) in [0, 1]; ``cutoff``: the band edge as a
    fraction of Nyquist (:func:`cxrgen.metrics.fourier.highpass` / ``lowpass``).
    ``setting_label`` names the counterfactual's setting. ``curves``: spectra_curves.parquet
    (method, scale, image_kind in original / counterfactual / difference, frequency, power),
    mean curves over each setting's images, drawn on a log axis.
    """
    original = np.asarray(original, dtype=np.float32)
    counterfactual = np.asarray(counterfactual, dtype=np.float32)
    if original.ndim != 2 or original.shape != counterfactual.shape:
        raise DataError(
            f"original {original.shape} and counterfactual {counterfactual.shape} must be "
            "equal (H, W) images"
        )
    missing = [
        c for c in ("method", "scale", "image_kind", "frequency", "power") if c not in curves
    ]
    if missing:
        raise DataError(f"spectra curves lack columns {missing}")
    pair = np.stack([original, counterfactual])
    high, low = highpass(pair, cutoff), lowpass(pair, cutoff)
    with png_figure(path, (13.5, 5.2)) as fig:
        fig.suptitle(
            title
            or f"Frequency content of a counterfactual ({setting_label}), "
            f"cut-off {cutoff:g} x Nyquist"
        )
        left, right = fig.subfigures(1, 2, width_ratios=[3, 2.2])
        axes = left.subplots(2, 3, squeeze=False)
        h_lim = max(float(np.abs(high).max()), 1e-6)
        l_lo, l_hi = float(low.min()), float(low.max())
        names = ("original", setting_label)
        for r in range(2):
            axes[r, 0].imshow(pair[r], cmap="gray", vmin=0, vmax=1)
            shown_h = axes[r, 1].imshow(high[r], cmap="gray", vmin=-h_lim, vmax=h_lim)
            shown_l = axes[r, 2].imshow(low[r], cmap="gray", vmin=l_lo, vmax=max(l_hi, l_lo + 1e-6))
            axes[r, 0].set_title(f"{names[r]}\n(intensity 0-1)")
            axes[r, 1].set_title(f"high-pass ({names[r]})\nr >= {cutoff:g} Nyquist")
            axes[r, 2].set_title(f"low-pass ({names[r]})\nr < {cutoff:g} Nyquist")
        for ax in axes.ravel():
            _bare(ax)
        left.colorbar(shown_h, ax=axes[:, 1], shrink=0.7, label="intensity (shared range)")
        left.colorbar(shown_l, ax=axes[:, 2], shrink=0.7, label="intensity (shared range)")
        ax = right.subplots()
        _spectra_panel(ax, curves, cutoff)


def _spectra_panel(ax, curves: pd.DataFrame, cutoff: float) -> None:
    """Mean radial power spectra: the originals once, counterfactual and difference per setting."""

    def draw(rows: pd.DataFrame, **style):
        rows = rows.sort_values("frequency")
        power = rows["power"].to_numpy(dtype=np.float64)
        power = np.where(power > 0, power, np.nan)  # log axis: no zero or empty bins
        ax.plot(rows["frequency"], power, **style)

    keys = curves[["method", "scale"]].drop_duplicates().sort_values(["method", "scale"])
    settings = [tuple(k) for k in keys.itertuples(index=False)]
    originals = [
        curves[
            (curves["method"] == m) & (curves["scale"] == s) & (curves["image_kind"] == "original")
        ]
        .sort_values("frequency")["power"]
        .to_numpy(dtype=np.float64)
        for m, s in settings
    ]
    same = all(
        len(o) == len(originals[0]) and np.allclose(o, originals[0], equal_nan=True)
        for o in originals
    )
    for k, (method, scale) in enumerate(settings):
        rows = curves[(curves["method"] == method) & (curves["scale"] == scale)]
        name, color = setting_name(method, scale), f"C{k % 10}"
        by_kind = {kind: g for kind, g in rows.groupby("image_kind")}
        if "original" in by_kind and (k == 0 or not same):
            label = "original" if same else f"original ({name})"
            draw(
                by_kind["original"],
                color="black" if same else color,
                lw=1.6,
                ls=":" if not same else "-",
                label=label,
            )
        if "counterfactual" in by_kind:
            draw(by_kind["counterfactual"], color=color, lw=1.2, label=f"counterfactual ({name})")
        if "difference" in by_kind:
            draw(by_kind["difference"], color=color, lw=1.2, ls="--", label=f"difference ({name})")
    ax.axvline(cutoff, color="0.5", lw=0.8, ls=":", label=f"cut-off {cutoff:g}")
    ax.set_yscale("log")
    ax.set_xlabel("radial frequency (fraction of Nyquist)")
    ax.set_ylabel("power (|FFT|^2 / (HW)^2, intensity^2)")
    ax.set_title("radially averaged power spectrum, mean over images")
    ax.grid(alpha=0.3, which="both", lw=0.4)
    if settings:
        ax.legend(frameon=False)
    else:
        ax.text(0.5, 0.5, "no spectra", ha="center", transform=ax.transAxes)


# --- detection -----------------------------------------------------------------------------


def gradcam_panel(
    path: str | Path,
    images: np.ndarray,
    labels_or_titles: Sequence[str],
    cams: np.ndarray,
    row_labels: Sequence[str] | None = None,
    title: str = "Grad-CAM of the noise-aware classifier",
    alpha: float = 0.45,
) -> None:
    """Images with their Grad-CAM maps overlaid, one row per group (e.g. real, generated).

    ``images`` and ``cams``: (R, C, H, W) (or (N, H, W): one row) in [0, 1], NaN images leave
    a cell empty; ``labels_or_titles``: one title per image, row by row (R * C of them);
    ``row_labels``: one per row. The map is drawn in the 'jet' colour map at opacity ``alpha``
    over the grey image, with one colour bar (maps are normalised per image).
    """
    images = np.asarray(images, dtype=np.float32)
    cams = np.asarray(cams, dtype=np.float32)
    if images.ndim == 3 and cams.ndim == 3:
        images, cams = images[None], cams[None]
    if images.ndim != 4 or images.shape != cams.shape:
        raise DataError(f"images {images.shape} and cams {cams.shape} must be equal (R, C, H, W)")
    n_rows, n_cols = images.shape[:2]
    titles = list(labels_or_titles)
    check(len(titles) == n_rows * n_cols, f"{len(titles)} titles for {n_rows * n_cols} images")
    if row_labels is not None:
        check(len(row_labels) == n_rows, f"{len(row_labels)} row labels for {n_rows} rows")
    check(0 < alpha <= 1, f"alpha must be in (0, 1], got {alpha}")
    cell = 1.9
    with png_figure(path, (n_cols * cell + 1.2, n_rows * (cell + 0.3) + 0.6)) as fig:
        fig.suptitle(title)
        axes = fig.subplots(n_rows, n_cols, squeeze=False)
        shown = None
        for r in range(n_rows):
            for c in range(n_cols):
                ax = axes[r, c]
                _bare(ax)
                if np.isnan(images[r, c]).all():
                    ax.set_frame_on(False)
                    continue
                ax.imshow(np.clip(images[r, c], 0, 1), cmap="gray", vmin=0, vmax=1)
                shown = ax.imshow(cams[r, c], cmap=CAM_CMAP, vmin=0, vmax=1, alpha=alpha)
                ax.set_title(titles[r * n_cols + c], fontsize=8)
            if row_labels is not None:
                axes[r, 0].set_ylabel(row_labels[r])
        if shown is not None:  # an opaque bar: the overlay's alpha would wash it out
            opaque = ScalarMappable(norm=Normalize(0, 1), cmap=CAM_CMAP)
            bar = fig.colorbar(opaque, ax=axes, shrink=0.7, aspect=30)
            bar.set_label("Grad-CAM (per image, 0-1)")
