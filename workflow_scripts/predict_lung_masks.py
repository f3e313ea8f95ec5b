"""Rule predict_lung_masks: another data set's lung segmenter labels every image of a store."""

from pathlib import Path

from cxrgen import logs
from cxrgen.devices import claim_device

smk = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with logs.stage_log(smk.log[0]), claim_device():
    import torch

    from cxrgen.lungseg.predict import write_predicted_masks

    torch.set_num_threads(smk.threads)
    write_predicted_masks(
        Path(smk.input.model).parent,
        Path(smk.input.images).parent,
        Path(smk.output.masks).parent,
    )
