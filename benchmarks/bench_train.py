"""Images/s of the project's diffusion training step against a minimal PyTorch loop.

Both train the same UNet (cxrgen.diffusion.model.build_unet) on batches of the same size:

(a) plain: random images in memory, uniform t, DDPM noising, forward, epsilon MSE, backward,
    AdamW step; nothing else.
(b) cxrgen: cxrgen.training.loop.run_training with the diffusion loss on a memory-mapped
    store: step-keyed data order, per-sample augmentation, label dropout, accelerate (mixed
    precision when asked), gradient clipping, LR schedule, EMA, loss logging.

Example (CPU, 32x32):
    uv run --frozen python benchmarks/bench_train.py --size 32 --batch 8 --steps 20
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from cxrgen.data.classes import write_classes
from cxrgen.data.store import load_split
from cxrgen.diffusion.config import DiffusionTrainConfig
from cxrgen.diffusion.model import build_scheduler, build_unet
from cxrgen.diffusion.train import diffusion_loss
from cxrgen.training.loop import run_training, seeded
from cxrgen.training.step import single_loss


def make_store(root: Path, n: int, size: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    (root / "store").mkdir()
    (root / "split").mkdir()
    np.save(root / "store" / "images.npy", rng.integers(0, 65535, (n, size, size), np.uint16))
    labels = np.arange(n) % 2
    pd.DataFrame(
        {
            "row": np.arange(n),
            "image_id": [str(i) for i in range(n)],
            "patient_id": [str(i) for i in range(n)],
            "class_name": ["a", "b"] * (n // 2),
            "label": labels,
            "split": "train",
        }
    ).to_parquet(root / "split" / "split.parquet")
    write_classes(root / "split" / "classes.json", ["a", "b"])
    return root / "store", root / "split"


def plain_loop(
    cfg: DiffusionTrainConfig, size: int, steps: int, warmup: int, device: str, bf16: bool
) -> float:
    model = seeded(
        0,
        lambda: build_unet(
            (size, size),
            2,
            cfg.block_out_channels,
            cfg.layers_per_block,
            cfg.attention_resolutions,
            cfg.dropout,
            cfg.norm_num_groups,
            cfg.attention_head_dim,
        ),
    ).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    sched = build_scheduler()
    b = cfg.batch_size
    x0 = torch.rand(b, 1, size, size, device=device) * 2 - 1
    labels = torch.randint(0, 2, (b,), device=device)
    autocast = (
        torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
        if bf16
        else contextlib.nullcontext()
    )
    for i in range(warmup + steps):
        if i == warmup:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        t = torch.randint(0, 1000, (b,), device=device)
        noise = torch.randn_like(x0)
        with autocast:
            pred = model(sched.add_noise(x0, noise, t), t, class_labels=labels).sample
        loss = F.mse_loss(pred.float(), noise)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return steps * b / (time.perf_counter() - t0)


def project_loop(cfg: DiffusionTrainConfig, size: int, steps: int, warmup: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        store, split = make_store(Path(tmp), max(64, cfg.batch_size), size)
        data = load_split(store, split)
        model = seeded(
            0,
            lambda: build_unet(
                (size, size),
                2,
                cfg.block_out_channels,
                cfg.layers_per_block,
                cfg.attention_resolutions,
                cfg.dropout,
                cfg.norm_num_groups,
                cfg.attention_head_dim,
            ),
        )
        loss = functools.partial(
            diffusion_loss,
            scheduler=build_scheduler(),
            num_classes=2,
            label_dropout=cfg.label_dropout,
        )
        out = run_training(
            single_loss(model, loss),
            data,
            Path(tmp) / "checkpoints",
            cfg,
            stage="bench",
            progress=False,
        )
    # one row per step: drop the warm-up rows
    return float(1 / (1 / out.history["images_per_s"].iloc[warmup:]).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=20, help="timed steps per loop")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--widths", type=int, nargs="+", default=[16, 32])
    p.add_argument("--layers", type=int, default=1, help="layers_per_block")
    p.add_argument("--attention", type=int, nargs="*", default=[], help="attention resolutions")
    p.add_argument("--groups", type=int, default=8, help="norm_num_groups")
    p.add_argument("--head-dim", type=int, default=16, help="attention_head_dim")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast in both loops")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = DiffusionTrainConfig(
        block_out_channels=tuple(args.widths),
        layers_per_block=args.layers,
        attention_resolutions=tuple(args.attention),
        norm_num_groups=args.groups,
        attention_head_dim=args.head_dim,
        batch_size=args.batch,
        max_steps=args.warmup + args.steps,
        warmup_steps=0,
        log_every=1,
        checkpoint_every=10**9,
        device=args.device,
        mixed_precision="bf16" if args.bf16 else "no",
    )
    plain = plain_loop(cfg, args.size, args.steps, args.warmup, args.device, args.bf16)
    ours = project_loop(cfg, args.size, args.steps, args.warmup)
    print(
        f"UNet {tuple(args.widths)} x{args.layers}, {args.size}x{args.size}, batch "
        f"{args.batch}, {args.device}{' bf16' if args.bf16 else ''}, "
        f"{torch.get_num_threads()} threads, {args.steps} timed steps"
    )
    print(f"plain PyTorch loop : {plain:8.1f} images/s")
    print(f"cxrgen training    : {ours:8.1f} images/s")
    print(f"ratio cxrgen/plain : {ours / plain:8.2f}")


if __name__ == "__main__":
    main()
