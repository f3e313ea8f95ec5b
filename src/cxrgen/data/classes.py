"""The class-name <-> label map, persisted as one JSON file (never a directory listing order).

A run's classes are the ones in its ``classes.json``. The names below are typed once here: the
data sets' own spellings (the phantoms write them, the readers check them, the paper's tables
are keyed by them) and the roles that config keys give a class by default (the paper's RSNA
task: Lung Opacity detected against Normal, counterfactuals translated toward Normal).
"""

from __future__ import annotations

from pathlib import Path

from cxrgen import io

# RSNA Pneumonia Detection Challenge, stage_2_detailed_class_info.csv
NORMAL = "Normal"  # COVID-QU-Ex names its healthy folder the same
LUNG_OPACITY = "Lung Opacity"
NOT_NORMAL = "No Lung Opacity / Not Normal"
RSNA_CLASSES = (NORMAL, LUNG_OPACITY, NOT_NORMAL)
# COVID-QU-Ex folder names
COVID_19 = "COVID-19"
NON_COVID = "Non-COVID"
COVID_QU_EX_CLASSES = (COVID_19, NON_COVID, NORMAL)

# roles: the defaults of the config keys that name a class
HEALTHY_CLASS = NORMAL  # invert / counterfactual target_class, evaluate negative_class
POSITIVE_CLASS = LUNG_OPACITY  # evaluate / figures positive_class


def write_classes(path: str | Path, names: list[str]) -> None:
    """Write ``{"names": [...], "index": {name: i}}``; label i is ``names[i]``."""
    io.write_json(path, {"names": list(names), "index": {c: i for i, c in enumerate(names)}})


def read_classes(path: str | Path) -> list[str]:
    """Class names in label order."""
    return list(io.read_json(path)["names"])
