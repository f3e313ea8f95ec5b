"""Rule preprocess: raw DICOM / image folders -> tensor store."""

from pathlib import Path

from cxrgen import logs
from cxrgen.config import from_mapping
from cxrgen.data.preprocess import PreprocessConfig, preprocess

smk = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with logs.stage_log(smk.log[0]):
    cfg = from_mapping(
        PreprocessConfig, smk.params.cfg, f"datasets.{smk.wildcards.dataset}.preprocess"
    )
    preprocess(smk.input.data, Path(smk.output.index).parent, cfg, threads=smk.threads)
