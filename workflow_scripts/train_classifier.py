"""Rule train_classifier: the noise-aware guidance classifier (same noise schedule as the DDPM)."""

from pathlib import Path

from cxrgen import logs
from cxrgen.config import from_mapping
from cxrgen.devices import claim_devices

smk = snakemake  # noqa: F821  (injected by Snakemake's script directive)
processes = int(smk.params.processes)

with logs.stage_log(smk.log[0]), claim_devices(processes):
    import torch

    from cxrgen.classifier.config import ClassifierTrainConfig
    from cxrgen.classifier.train import train_classifier
    from cxrgen.training.launch import run_launched

    torch.set_num_threads(smk.threads)
    cfg = from_mapping(
        ClassifierTrainConfig, smk.params.cfg, f"datasets.{smk.wildcards.dataset}.classifier"
    )
    data = (Path(smk.input.images).parent, Path(smk.input.split).parent)
    out = Path(smk.output.model).parent
    scheduler = Path(smk.input.scheduler).parent
    if processes > 1:  # accelerate launch over the claimed GPUs (CPU processes without)
        cpu = not torch.cuda.is_available()
        run_launched("train-classifier", *data, out, cfg, processes, smk.params.checkpoints,
                     scheduler_dir=scheduler, cpu=cpu)  # fmt: skip
    else:
        train_classifier(*data, out, cfg, scheduler_dir=scheduler,
                         checkpoint_dir=smk.params.checkpoints)  # fmt: skip
