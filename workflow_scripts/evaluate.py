"""Rule evaluate: detection, localisation, ground truth, severity and spectra tables."""

from pathlib import Path

from cxrgen import logs
from cxrgen.config import from_mapping
from cxrgen.devices import claim_device

smk = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with logs.stage_log(smk.log[0]), claim_device():
    import torch

    from cxrgen.evaluation.evaluate import EvaluateConfig, evaluate

    torch.set_num_threads(smk.threads)
    cfg = from_mapping(EvaluateConfig, smk.params.cfg, f"datasets.{smk.wildcards.dataset}.evaluate")
    classifier = smk.input.get("classifier")
    evaluate(
        Path(smk.input.latents).parent,
        [Path(p).parent for p in smk.input.scores],
        Path(smk.input.images).parent,
        Path(smk.output.summary).parent,
        cfg,
        classifier_dir=Path(classifier).parent if classifier else None,
        lung_masks=smk.input.get("lung_masks"),  # datasets.X.lung_masks_from
    )
