"""Rule generate_synthetic: translations (StarGAN) or class samples (DCGAN) for evaluation."""

from pathlib import Path

from cxrgen import logs
from cxrgen.config import from_mapping
from cxrgen.devices import claim_device

smk = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with logs.stage_log(smk.log[0]), claim_device():
    import torch

    from cxrgen.gan.generate_synthetic import GenerateConfig, generate_synthetic

    torch.set_num_threads(smk.threads)
    cfg = from_mapping(GenerateConfig, smk.params.cfg, f"datasets.{smk.wildcards.dataset}.generate")
    generate_synthetic(
        Path(smk.input.model).parent,
        Path(smk.input.images).parent,
        Path(smk.input.split).parent,
        Path(smk.output.index).parent,
        cfg,
    )
