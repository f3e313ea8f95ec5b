"""Rule invert: every validation image to its DDIM latent at depth L, and back (exactness)."""

from pathlib import Path

from cxrgen import logs
from cxrgen.config import from_mapping
from cxrgen.devices import claim_device

smk = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with logs.stage_log(smk.log[0]), claim_device():
    import torch

    from cxrgen.counterfactual.invert import InvertConfig, invert_split

    torch.set_num_threads(smk.threads)
    cfg = from_mapping(InvertConfig, smk.params.cfg, f"datasets.{smk.wildcards.dataset}.invert")
    invert_split(
        Path(smk.input.unet).parents[1],
        Path(smk.input.images).parent,
        Path(smk.input.split).parent,
        Path(smk.output.index).parent,
        cfg,
        applied=smk.params.applied,  # "datasets.X.apply_model: Y" when Y's model scores X
    )
