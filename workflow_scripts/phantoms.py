"""Rule phantoms: write the synthetic data set of one configured data set."""

from cxrgen import logs, phantoms
from cxrgen.config import from_mapping

smk = snakemake  # noqa: F821  (injected by Snakemake's script directive)
# the phantom layout that writes a data set of each config layout
PHANTOM_LAYOUT = {"rsna": "rsna", "ralo": "ralo", "image_folders": "covidqu"}

with logs.stage_log(smk.log[0]):
    cls, make = phantoms.LAYOUTS[PHANTOM_LAYOUT[smk.params.layout]]
    make(
        smk.output[0],
        from_mapping(cls, smk.params.cfg, f"datasets.{smk.wildcards.dataset}.phantoms"),
    )
