"""Checkpoints: exact round trip of every state, atomic writes, keep-last-N, no pickled code."""

import random

import numpy as np
import pytest
import torch
from diffusers.training_utils import EMAModel

from cxrgen.errors import ConfigError
from cxrgen.training.checkpoint import (
    Checkpointer,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from cxrgen.training.loop_config import TrainLoopConfig
from cxrgen.training.schedule import make_lr_schedule


def make_state(seed=0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.SiLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    sched = make_lr_schedule(opt, TrainLoopConfig(max_steps=20, warmup_steps=3))
    ema = EMAModel(net.parameters(), decay=0.9)
    return net, opt, sched, ema


def train_steps(net, opt, sched, ema, n):
    for _ in range(n):
        loss = net(torch.randn(5, 4)).pow(2).mean()
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad()
        ema.step(net.parameters())


def test_round_trip_restores_every_state_and_continues_identically(tmp_path):
    net, opt, sched, ema = make_state()
    train_steps(net, opt, sched, ema, 4)
    objects = {"model": net, "optimizer": opt, "lr_schedule": sched, "ema": ema}
    path = save_checkpoint(tmp_path / "c.pt", 4, objects, extra={"lambda_ds": 1.25, "h": [1, 2]})
    # reference: continue in place (RNG states continue from the save point)
    train_steps(net, opt, sched, ema, 3)
    after_np, after_py = np.random.rand(), random.random()
    reference = [p.detach().clone() for p in net.parameters()]
    reference_ema = [p.clone() for p in ema.shadow_params]

    net2, opt2, sched2, ema2 = make_state(seed=1)  # different init, overwritten by the load
    step, extra = load_checkpoint(
        path, {"model": net2, "optimizer": opt2, "lr_schedule": sched2, "ema": ema2}
    )
    assert step == 4 and extra == {"lambda_ds": 1.25, "h": [1, 2]}
    train_steps(net2, opt2, sched2, ema2, 3)
    assert (np.random.rand(), random.random()) == (after_np, after_py)
    for a, b in zip(reference, net2.parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(reference_ema, ema2.shadow_params, strict=True):
        assert torch.equal(a, b)
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    # plain tensors and values only: loads with weights_only
    payload = torch.load(path, weights_only=True)
    assert set(payload["state"]) == {"model", "optimizer", "lr_schedule", "ema"}


def test_keeps_last_n_ignores_temporaries_and_resumes_newest(tmp_path, caplog):
    net, opt, sched, ema = make_state()
    ckpt = Checkpointer(tmp_path / "ck", keep=2, model=net, optimizer=opt, scaler=None)
    assert ckpt.restore_latest() is None
    for step in (5, 10, 15, 20):
        ckpt.save(step, {"step_seen": step})
    (tmp_path / "ck" / ".step-00000025.pt.abc.pt").write_bytes(b"half written")
    assert [s for s, _ in list_checkpoints(tmp_path / "ck")] == [15, 20]
    assert latest_checkpoint(tmp_path / "ck").name == "step-00000020.pt"
    with caplog.at_level("INFO", logger="cxrgen.training.checkpoint"):
        step, extra = ckpt.restore_latest()
    assert step == 20 and extra == {"step_seen": 20}
    assert "resuming from step 20" in caplog.text
    assert latest_checkpoint(tmp_path / "missing") is None


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    net, opt, _, _ = make_state()
    ckpt = Checkpointer(tmp_path, keep=3, model=net, optimizer=opt)
    ckpt.save(1)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        ckpt.save(2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000001.pt"]


def test_mismatched_model_is_a_config_error(tmp_path):
    net, opt, _, _ = make_state()
    save_checkpoint(tmp_path / "c.pt", 1, {"model": net})
    other = torch.nn.Linear(4, 3)
    with pytest.raises(ConfigError, match="another model config"):
        load_checkpoint(tmp_path / "c.pt", {"model": other})
    with pytest.raises(ConfigError, match="no state for"):
        load_checkpoint(tmp_path / "c.pt", {"model": net, "optimizer": opt})


def test_changed_result_config_sets_old_checkpoints_aside(tmp_path):
    import dataclasses

    from cxrgen.training.checkpoint import checkpoint_path, save_checkpoint
    from cxrgen.training.loop import set_aside_if_incompatible
    from cxrgen.training.loop_config import TrainLoopConfig

    cfg = TrainLoopConfig(seed=1)
    ckpt_dir = tmp_path / "checkpoints"
    save_checkpoint(checkpoint_path(ckpt_dir, 5), 5, {}, {"config": cfg.as_dict()})
    # a resumable change (more steps) keeps the checkpoints
    set_aside_if_incompatible(ckpt_dir, dataclasses.replace(cfg, max_steps=cfg.max_steps * 2))
    assert checkpoint_path(ckpt_dir, 5).exists()
    # a result-changing one (another seed) moves them aside, nothing deleted
    set_aside_if_incompatible(ckpt_dir, dataclasses.replace(cfg, seed=2))
    assert not ckpt_dir.exists()
    assert checkpoint_path(tmp_path / "checkpoints.stale-1", 5).exists()
