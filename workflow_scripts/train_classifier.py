"""Rule train_classifier: the noise-aware guidance classifier (same noise schedule as the DDPM)."""

from pathlib import Path

from cxrgen import logs
from cxrgen.config import from_mapping
from cxrgen.devices import claim_device

smk = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with logs.stage_log(smk.log[0]), claim_device():
    import torch

    from cxrgen.classifier.train import ClassifierTrainConfig, train_classifier

    torch.set_num_threads(smk.threads)
    cfg = from_mapping(
        ClassifierTrainConfig, smk.params.cfg, f"datasets.{smk.wildcards.dataset}.classifier"
    )
    train_classifier(
        Path(smk.input.images).parent,
        Path(smk.input.split).parent,
        Path(smk.output.model).parent,
        cfg,
        scheduler_dir=Path(smk.input.scheduler).parent,
        checkpoint_dir=smk.params.checkpoints,
    )
