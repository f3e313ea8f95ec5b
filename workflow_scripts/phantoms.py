"""Rule phantoms: write the synthetic data set of one configured data set."""

from cxrgen import logs, phantoms
from cxrgen.config import from_mapping

smk = snakemake  # noqa: F821  (injected by Snakemake's script directive)
# the RSNA-kind DICOM phantoms, each in its layout (PhantomConfig)
DICOM_LAYOUTS = {"rsna": phantoms.make_rsna_phantoms, "ralo": phantoms.make_ralo_phantoms}

with logs.stage_log(smk.log[0]):
    section = f"datasets.{smk.wildcards.dataset}.phantoms"
    if smk.params.layout in DICOM_LAYOUTS:
        cfg = from_mapping(phantoms.PhantomConfig, smk.params.cfg, section)
        DICOM_LAYOUTS[smk.params.layout](smk.output[0], cfg)
    else:
        cfg = from_mapping(phantoms.CovidPhantomConfig, smk.params.cfg, section)
        phantoms.make_covidqu_phantoms(smk.output[0], cfg)
