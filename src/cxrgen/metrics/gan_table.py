"""The tidy GAN-metrics table: its columns, one row per task, Frechet rows, per-target means.

One row per (metric, network, model, mode, source, target): StarGAN tasks are source ->
target domain pairs, DCGAN rows have source ``-`` (and target ``all`` for the pooled set);
:func:`add_means` appends the per-target mean over source domains (source ``mean``, the
paper's per-target number) and the mean over all tasks (target ``mean``). Which metrics fill
the table, and with which networks, is :mod:`cxrgen.metrics.gan_metrics`'s business.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd

from cxrgen.metrics.fid import Stats, frechet_distance, gaussian_stats

log = logging.getLogger(__name__)

COLUMNS = ["metric", "network", "model", "mode", "source", "target", "value", "n", "status"]
ROW_FIELDS = [c for c in COLUMNS if c != "network"]  # what a metric function returns per row
GROUP_KEYS = ["metric", "network", "model", "mode"]
NO_SOURCE = "-"

Group = tuple[str, str, str, np.ndarray]  # mode, source, target, rows of the generated set


def task_groups(index: pd.DataFrame) -> Iterator[Group]:
    """(mode, source, target, rows): StarGAN tasks, or DCGAN classes (source '-')."""
    table = index.assign(source=index["source_domain"].replace("", NO_SOURCE))
    for (mode, source, target), sub in table.groupby(
        ["mode", "source", "target_domain"], sort=False
    ):
        yield str(mode), str(source), str(target), sub["row"].to_numpy()


def _row(metric, model, mode, source, target, value, n, status) -> dict[str, Any]:
    values = (metric, model, mode, source, target, value, n, status)
    return dict(zip(ROW_FIELDS, values, strict=True))


def _fd(a: Stats, b: Stats, status: str) -> tuple[float, str]:
    if a.n < 2 or b.n < 2:
        return float("nan"), "too_few_images"
    try:
        return frechet_distance(a, b), status
    except (ValueError, np.linalg.LinAlgError) as exc:
        log.warning("Frechet distance failed (%s)", exc)
        return float("nan"), "numerical_error"


def frechet_rows(
    metric: str,
    model: str,
    groups: list[Group],
    features_of: Callable[[np.ndarray], np.ndarray],
    real: Mapping[str, Stats],
    real_all: Stats,
    status: str = "ok",
) -> list[dict[str, Any]]:
    """One row per group against the real stats of its target; DCGAN also the pooled 'all'."""
    rows, pooled = [], {}
    for mode, source, target, members in groups:
        features = features_of(members)
        value, st = _fd(gaussian_stats(features), real[target], status)
        rows.append(_row(metric, model, mode, source, target, value, len(members), st))
        if source == NO_SOURCE:
            pooled.setdefault(mode, []).append(features)
    for mode, parts in pooled.items():
        features = np.concatenate(parts)
        value, st = _fd(gaussian_stats(features), real_all, status)
        rows.append(_row(metric, model, mode, NO_SOURCE, "all", value, len(features), st))
    return rows


def _combined_status(statuses: pd.Series) -> str:
    unique = set(statuses)
    return unique.pop() if len(unique) == 1 else "partial"


def add_means(table: pd.DataFrame) -> pd.DataFrame:
    """Append per-target means over source domains and the mean over all tasks (StarGAN), per
    metric, network, model and mode."""
    tasks = table[(table["source"] != NO_SOURCE) & (table["source"] != "mean")]
    extra = []

    def mean_row(key: tuple, target: str, part: pd.DataFrame) -> dict[str, Any]:
        value, n, status = part["value"].mean(), int(part["n"].sum()), part["status"]
        return {
            **dict(zip(GROUP_KEYS, key, strict=True)),
            "source": "mean",
            "target": target,
            "value": value,
            "n": n,
            "status": _combined_status(status),
        }

    for key, sub in tasks.groupby(GROUP_KEYS, sort=False):
        extra += [mean_row(key, target, per) for target, per in sub.groupby("target", sort=False)]
        extra.append(mean_row(key, "mean", sub))
    return pd.concat([table, pd.DataFrame(extra, columns=table.columns)], ignore_index=True)
