"""The one-page summary of a whole run: every data set's headline numbers in one table.

``run_summary(evaluations, gan_metrics, out_dir)`` stacks the counterfactual summary of each
data set with counterfactuals (``summary.parquet`` of the evaluate stage; a data set that
trains a diffusion model or one scored by another's, the workflow's apply_model) and the
per-target-domain means of each GAN data set (FID, chest X-ray FID and LPIPS of
latent-guided StarGAN translations and DCGAN samples, as the second paper's Table) into
``summary.parquet``, ``summary.md`` and ``summary.html``. Columns: dataset, section, metric,
value, ci_low, ci_high, setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from cxrgen import io
from cxrgen.evaluation.evaluation_summary import COLUMNS
from cxrgen.html_tables import write_html_table


def gan_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Per-target means of the GAN metrics table: StarGAN latent-guided, DCGAN samples."""
    keep = (table["source"] == "mean") & (table["model"] == "stargan") & (
        table["mode"] == "latent"
    ) | ((table["model"] == "dcgan") & (table["target"] != "all"))
    rows = table[keep]
    return pd.DataFrame(
        {
            "section": "Med-StyleGAN2",
            "metric": rows["metric"] + " " + rows["model"] + " -> " + rows["target"],
            "value": rows["value"].astype(float),
            "ci_low": np.nan,
            "ci_high": np.nan,
            "setting": rows["status"].astype(str)
            + (", " + rows["network"].astype(str) if "network" in rows else ""),
            "split": "",
        }
    )


def run_summary(
    evaluations: Mapping[str, str | Path], gan_metrics: Mapping[str, str | Path], out_dir
) -> pd.DataFrame:
    """``evaluations`` / ``gan_metrics``: data set name -> table path. Returns the summary."""
    frames = []
    for name, path in sorted(evaluations.items()):
        frames.append(pd.read_parquet(path).assign(dataset=name))
    for name, path in sorted(gan_metrics.items()):
        frames.append(gan_rows(pd.read_parquet(path)).assign(dataset=name))
    columns = ["dataset", *COLUMNS]
    summary = pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(
        columns=columns
    )  # fmt: skip
    out_dir = Path(out_dir)
    io.write_parquet(out_dir / "summary.parquet", summary)
    shown = summary.copy()
    for column in ("value", "ci_low", "ci_high"):
        shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.3f}")
    io.write_text(
        out_dir / "summary.md",
        "# Run summary\n\n" + shown.to_markdown(index=False) + "\n",
    )
    write_html_table(
        out_dir / "summary.html", summary, "Run summary",
        "Headline numbers of every data set: counterfactual detection, localisation, ground "
        "truth, severity and inversion (diffusion study); FID, chest X-ray FID and LPIPS per "
        "target domain (Med-StyleGAN2 study).",
    )  # fmt: skip
    return summary
