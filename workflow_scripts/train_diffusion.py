"""Rule train_diffusion: the class-conditional DDPM of one data set (resumes if killed)."""

from pathlib import Path

from cxrgen import logs
from cxrgen.config import from_mapping
from cxrgen.devices import claim_device

smk = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with logs.stage_log(smk.log[0]), claim_device():
    import torch

    from cxrgen.diffusion.train import DiffusionTrainConfig, train_diffusion

    torch.set_num_threads(smk.threads)
    cfg = from_mapping(
        DiffusionTrainConfig, smk.params.cfg, f"datasets.{smk.wildcards.dataset}.diffusion"
    )
    train_diffusion(
        Path(smk.input.images).parent,
        Path(smk.input.split).parent,
        Path(smk.output.loss).parent,
        cfg,
        checkpoint_dir=smk.params.checkpoints,
    )
