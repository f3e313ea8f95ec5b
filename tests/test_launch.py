"""Training in several processes through accelerate launch (CPU processes stand in for GPUs)."""

import pandas as pd
import pytest
import torch
from gan_store import make_domain_store
from safetensors.torch import load_file
from synthetic_store import make_store

from cxrgen import io
from cxrgen.diffusion.config import DiffusionTrainConfig
from cxrgen.diffusion.train import train_diffusion
from cxrgen.errors import CxrgenError
from cxrgen.gan.config import StarGANTrainConfig
from cxrgen.gan.stargan_train import train_stargan
from cxrgen.training.launch import launch_command, run_launched

TINY = dict(
    block_out_channels=(16, 32), norm_num_groups=8, attention_head_dim=8,
    attention_resolutions=(), mid_attention=False, num_train_timesteps=100, batch_size=4,
    max_steps=4, warmup_steps=1, checkpoint_every=2, log_every=1, n_sample_per_class=1,
    sample_steps=2,
)  # fmt: skip


def test_two_processes_train_and_write_the_model(tmp_path):
    store, split = make_store(tmp_path / "data", n=16, size=16, n_valid=4)
    cfg = DiffusionTrainConfig(**TINY)
    out, ckpt = tmp_path / "model", tmp_path / "ckpt"
    run_launched("train-diffusion", store, split, out, cfg, 2, ckpt, cpu=True)
    provenance = io.read_json(out / "provenance.json")
    assert provenance["processes"] == 2
    assert provenance["config"]["batch_size"] == 4  # the global batch, split in two
    assert pd.read_parquet(out / "loss.parquet")["step"].max() == 4
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").exists()
    assert sorted(p.name for p in ckpt.glob("step-*.pt"))  # checkpoints where asked


def test_a_two_process_checkpoint_resumes_in_one_process(tmp_path, caplog):
    """A job killed on two GPUs can go on where one is free: the checkpoint holds the global
    batch position, so the data order and history continue (dropout draws are per process,
    so the weights are not those of a two-process run to the bit)."""
    store, split = make_store(tmp_path / "data", n=16, size=16, n_valid=4)
    cfg, ckpt = DiffusionTrainConfig(**TINY), tmp_path / "ckpt"
    run_launched("train-diffusion", store, split, tmp_path / "two", cfg, 2, ckpt, cpu=True)
    (ckpt / "step-00000004.pt").unlink()  # killed after the step-2 checkpoint
    two = pd.read_parquet(tmp_path / "two" / "loss.parquet")
    with caplog.at_level("INFO", logger="cxrgen"):
        history = train_diffusion(store, split, tmp_path / "one", cfg, False, ckpt)
    assert "resuming from step 2" in caplog.text
    assert history["step"].tolist() == [1, 2, 3, 4]
    pd.testing.assert_frame_equal(history.iloc[:2], two.iloc[:2])  # the two-process steps
    assert io.read_json(tmp_path / "one" / "provenance.json")["processes"] == 1
    assert (tmp_path / "one" / "unet" / "diffusion_pytorch_model.safetensors").exists()


def test_a_gan_trains_in_two_processes_as_in_one(tmp_path):
    """The GANs go through the same loop: StarGAN v2's four updates per step under DDP. Its
    draws are made for the global batch and it has no batch norm, so two processes average
    the same gradients as one and end at the same weights up to float rounding."""
    store = make_domain_store(tmp_path / "data", ["a", "b", "c"], n_train=4, size=16)
    cfg = StarGANTrainConfig(
        base_dim=8, max_conv_dim=16, style_dim=8, latent_dim=4, mapping_dim=16,
        g_downsamplings=2, batch_size=4, max_steps=4, checkpoint_every=2, log_every=1,
        ds_iter=10, n_sample_per_domain=1,
    )  # fmt: skip
    run_launched("train-stargan", *store, tmp_path / "two", cfg, 2, cpu=True)
    assert io.read_json(tmp_path / "two" / "provenance.json")["processes"] == 2
    train_stargan(*store, tmp_path / "one", cfg, progress=False)
    for name in ("generator", "mapping_network", "style_encoder"):
        two = load_file(tmp_path / "two" / f"{name}.safetensors")
        one = load_file(tmp_path / "one" / f"{name}.safetensors")
        for key in two:
            torch.testing.assert_close(two[key], one[key], rtol=0, atol=1e-5)
        assert two.keys() == one.keys()
    history = pd.read_parquet(tmp_path / "two" / "loss.parquet")
    assert history["lambda_ds"].tolist() == pytest.approx([2.0, 1.8, 1.6, 1.4])


def test_a_failing_launch_is_an_error(tmp_path):
    with pytest.raises(CxrgenError, match="2-process train-diffusion exited"):
        run_launched(
            "train-diffusion", tmp_path / "none", tmp_path / "none", tmp_path / "out",
            DiffusionTrainConfig(**TINY), 2, cpu=True,
        )  # fmt: skip


def test_launch_command_runs_the_cli_module():
    cmd = launch_command(4, ["train-classifier", "--store", "s"])
    assert cmd[cmd.index("--num_processes") + 1] == "4" and "--multi_gpu" in cmd
    assert cmd[-4:] == ["cxrgen.cli", "train-classifier", "--store", "s"]
    cpu = launch_command(2, [], cpu=True)
    assert "torch.distributed.run" in cpu and cpu[cpu.index("--nproc_per_node") + 1] == "2"
