"""Synthetic chest X-ray phantoms with exact ground truth.

Three data sets: an RSNA Pneumonia-layout DICOM archive
(:func:`make_rsna_phantoms`) whose images come with their healthy twin,
lesion and lung masks and RALO-style severity scores, the same kind of images
in the RALO layout (:func:`make_ralo_phantoms`: images and a severity CSV, no
class labels), and a COVID-QU-Ex-layout PNG set (:func:`make_covidqu_phantoms`).
:func:`contact_sheet` draws a grid of any of them for people to look at.
"""

from cxrgen.phantoms.config import PhantomConfig
from cxrgen.phantoms.contact_sheet import contact_sheet
from cxrgen.phantoms.covidqu import CovidPhantomConfig, make_covidqu_phantoms
from cxrgen.phantoms.ground_truth import read_ground_truth
from cxrgen.phantoms.lesions import ralo_scores
from cxrgen.phantoms.ralo import make_ralo_phantoms
from cxrgen.phantoms.rsna import make_rsna_phantoms

# layout -> (its config class, its maker(out_dir, cfg)): the command line, the rule and the
# benchmarks read the layouts from here
LAYOUTS = {
    "rsna": (PhantomConfig, make_rsna_phantoms),
    "ralo": (PhantomConfig, make_ralo_phantoms),
    "covidqu": (CovidPhantomConfig, make_covidqu_phantoms),
}

__all__ = [
    "LAYOUTS",
    "CovidPhantomConfig",
    "PhantomConfig",
    "contact_sheet",
    "make_covidqu_phantoms",
    "make_ralo_phantoms",
    "make_rsna_phantoms",
    "ralo_scores",
    "read_ground_truth",
]
