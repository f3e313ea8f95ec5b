"""Rule evaluation_figures: Fig. 3, Fig. 4, ROC / PR, AUROC vs scale, severity, Grad-CAM."""

from pathlib import Path

from cxrgen import logs
from cxrgen.config import from_mapping
from cxrgen.devices import claim_device

smk = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with logs.stage_log(smk.log[0]), claim_device():
    import torch

    from cxrgen.evaluation.evaluation_figures import FiguresConfig, write_figures

    torch.set_num_threads(smk.threads)
    cfg = from_mapping(FiguresConfig, smk.params.cfg, f"datasets.{smk.wildcards.dataset}.figures")
    classifier = smk.input.get("classifier")
    write_figures(
        Path(smk.input.latents).parent,
        [Path(p).parent for p in smk.input.scores],
        Path(smk.input.images).parent,
        Path(smk.input.tables[0]).parent,
        Path(smk.output.fig3).parent,
        cfg,
        classifier_dir=Path(classifier).parent if classifier else None,
    )
