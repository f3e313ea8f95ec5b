"""Rule phantom_contact_sheet: a picture of the generated phantoms for people."""

from cxrgen import logs, phantoms

smk = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with logs.stage_log(smk.log[0]):
    phantoms.contact_sheet(smk.input[0], smk.output[0])
