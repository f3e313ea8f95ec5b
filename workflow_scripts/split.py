"""Rule split: patient-level stratified split of one tensor store."""

from pathlib import Path

from cxrgen import logs
from cxrgen.config import from_mapping
from cxrgen.data.split import SplitConfig, run_split

smk = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with logs.stage_log(smk.log[0]):
    cfg = from_mapping(SplitConfig, smk.params.cfg, f"datasets.{smk.wildcards.dataset}.split")
    run_split(Path(smk.input.index).parent, Path(smk.output.split).parent, cfg)
