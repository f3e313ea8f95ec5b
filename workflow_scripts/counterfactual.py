"""Rule counterfactual: healthy counterfactuals of the latents by one method at one scale."""

from pathlib import Path

from cxrgen import logs
from cxrgen.config import from_mapping
from cxrgen.devices import claim_device

smk = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with logs.stage_log(smk.log[0]), claim_device():
    import torch

    from cxrgen.counterfactual.config import CounterfactualConfig
    from cxrgen.counterfactual.counterfactual import make_counterfactuals

    torch.set_num_threads(smk.threads)
    name = f"datasets.{smk.wildcards.dataset}.counterfactual"
    cfg = from_mapping(CounterfactualConfig, smk.params.cfg, name)
    classifier = smk.input.get("classifier")
    first_pass = smk.input.get("first_pass_scores")
    make_counterfactuals(
        smk.wildcards.method,
        float(smk.wildcards.scale),
        Path(smk.input.latents).parent,
        Path(smk.params.model_dir),
        Path(smk.input.images).parent,
        Path(smk.output.scores).parent,
        cfg,
        classifier_dir=Path(classifier).parent if classifier else None,
        first_pass_dir=Path(first_pass).parent if first_pass else None,
    )
