"""Rule apply: a finished data set's models on a folder of new images (cxrgen.apply)."""

from pathlib import Path

from cxrgen import logs
from cxrgen.devices import claim_device

smk = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with logs.stage_log(smk.log[0]), claim_device():
    import torch

    from cxrgen.apply import apply

    torch.set_num_threads(smk.threads)
    cfg = smk.params.cfg
    apply(
        Path(smk.input.unet).parents[2],  # RESULTS/models/DATASET
        smk.input.images,
        Path(smk.output.scores).parent,
        cfg.get("method"),
        cfg.get("scale"),
        progress=False,
    )
