"""Rule train_diffusion: the class-conditional DDPM of one data set (resumes if killed)."""

from pathlib import Path

from cxrgen import logs
from cxrgen.config import from_mapping
from cxrgen.devices import claim_devices

smk = snakemake  # noqa: F821  (injected by Snakemake's script directive)
processes = int(smk.params.processes)

with logs.stage_log(smk.log[0]), claim_devices(processes):
    import torch

    from cxrgen.diffusion.config import DiffusionTrainConfig
    from cxrgen.diffusion.train import train_diffusion
    from cxrgen.training.launch import run_launched

    torch.set_num_threads(smk.threads)
    cfg = from_mapping(
        DiffusionTrainConfig, smk.params.cfg, f"datasets.{smk.wildcards.dataset}.diffusion"
    )
    data = (Path(smk.input.images).parent, Path(smk.input.split).parent)
    out = Path(smk.output.loss).parent
    if processes > 1:  # accelerate launch over the claimed GPUs (CPU processes without)
        cpu = not torch.cuda.is_available()
        run_launched("train-diffusion", *data, out, cfg, processes, smk.params.checkpoints,
                     cpu=cpu)  # fmt: skip
    else:
        train_diffusion(*data, out, cfg, checkpoint_dir=smk.params.checkpoints)
