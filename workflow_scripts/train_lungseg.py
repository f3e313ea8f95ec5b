"""Rule train_lungseg: the lung segmenter on a data set's own lung masks (resumes if killed)."""

from pathlib import Path

from cxrgen import logs
from cxrgen.config import from_mapping
from cxrgen.devices import claim_device

smk = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with logs.stage_log(smk.log[0]), claim_device():
    import torch

    from cxrgen.lungseg.config import LungSegTrainConfig
    from cxrgen.lungseg.train import train_lungseg

    torch.set_num_threads(smk.threads)
    cfg = from_mapping(
        LungSegTrainConfig, smk.params.cfg, f"datasets.{smk.wildcards.dataset}.lungseg"
    )
    train_lungseg(
        Path(smk.input.images).parent,
        Path(smk.input.split).parent,
        Path(smk.output.model).parent,
        cfg,
        checkpoint_dir=smk.params.checkpoints,
    )
