"""Rules train_stargan / train_dcgan: train one GAN of a data set (resumes if killed)."""

from pathlib import Path

from cxrgen import logs
from cxrgen.config import from_mapping
from cxrgen.devices import claim_device

smk = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with logs.stage_log(smk.log[0]), claim_device():
    import torch

    from cxrgen.gan.config import DCGANTrainConfig, StarGANTrainConfig
    from cxrgen.gan.dcgan_train import train_dcgan
    from cxrgen.gan.stargan_train import train_stargan

    torch.set_num_threads(smk.threads)
    kind = "stargan" if smk.rule == "train_stargan" else "dcgan"
    cls, train = {
        "stargan": (StarGANTrainConfig, train_stargan),
        "dcgan": (DCGANTrainConfig, train_dcgan),
    }[kind]
    cfg = from_mapping(cls, smk.params.cfg, f"datasets.{smk.wildcards.dataset}.{kind}")
    train(
        Path(smk.input.images).parent,
        Path(smk.input.split).parent,
        Path(smk.output.loss).parent,
        cfg,
    )
