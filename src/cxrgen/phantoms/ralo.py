"""Phantom chest X-rays laid out like the RALO severity data set: images and one score CSV.

RALO (Radiographic Assessment of Lung Opacity) ships chest radiographs with radiologists'
per-lung geographic-extent and opacity scores and no opacity-class labels: a data set to
read severity on, not to train a detector with. Layout of ``out_dir`` (see
:func:`make_ralo_phantoms`)::

    images/{image_id}.dcm          one DICOM per image (the RSNA phantoms' encodings)
    ralo_severity.csv              patientId (the image id) + the RALO_COLUMNS scores
    ground_truth/{image_id}.npz    image, healthy twin, lesion mask, lung labels
    manifest.parquet, phi_values.json, phantom_config.json

The images are drawn as the RSNA-layout phantoms are (:class:`PhantomConfig`; give it its own
seed), so a model trained on those can score these; there is no labels or class-info CSV.
The preprocess stage derives each image's class from its scores
(``preprocess.classes_from_severity``): Normal where every score is 0, Lung Opacity
otherwise.
"""

from __future__ import annotations

import os

import pandas as pd

from cxrgen.phantoms.config import PhantomConfig
from cxrgen.phantoms.rsna import SEVERITY_CSV, write_phantom_set

IMAGE_DIR = "images"

__all__ = ["IMAGE_DIR", "SEVERITY_CSV", "make_ralo_phantoms"]


def make_ralo_phantoms(
    out_dir: str | os.PathLike, cfg: PhantomConfig, progress: bool = True
) -> pd.DataFrame:
    """Write the RALO-layout phantom set into ``out_dir``; return the manifest.

    The same ``cfg`` gives byte-identical files; the manifest (phantom truth, not read by the
    pipeline) keeps each image's drawn class.
    """
    return write_phantom_set(out_dir, cfg, progress, IMAGE_DIR, class_csvs=False, desc="RALO")
