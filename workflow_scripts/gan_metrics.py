"""Rule gan_metrics: FID (Inception and chest X-ray feature space) and LPIPS diversity."""

from pathlib import Path

from cxrgen import logs
from cxrgen.config import from_mapping
from cxrgen.devices import claim_device

smk = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with logs.stage_log(smk.log[0]), claim_device():
    import torch

    from cxrgen.metrics.gan_metrics import GanMetricsConfig, evaluate_gan

    torch.set_num_threads(smk.threads)
    cfg = from_mapping(
        GanMetricsConfig, smk.params.cfg, f"datasets.{smk.wildcards.dataset}.gan_metrics"
    )
    classifier = smk.input.get("classifier")
    evaluate_gan(
        {"stargan": Path(smk.input.stargan).parent, "dcgan": Path(smk.input.dcgan).parent},
        Path(smk.input.images).parent,
        Path(smk.input.split).parent,
        Path(smk.output.table).parent,
        cfg,
        classifier_dir=Path(classifier).parent if classifier else None,
    )
