"""Images/s of the project's StarGAN v2 step against a plain loop, and of FID feature extraction.

GAN training, both loops on the same networks (cxrgen.gan.stargan_nets) and batch size:

(a) plain: random source / reference images in memory, the four StarGAN v2 updates (D latent,
    D reference, G latent, G reference) with the project's loss functions, Adam, EMA lerp;
    nothing else.
(b) cxrgen: cxrgen.training.loop.run_training with cxrgen.gan.stargan_train.stargan_spec on a
    memory-mapped store: step-keyed data order (class-balanced), reference sampling, per-sample
    augmentation, per-step seeding, lambda_ds state, loss logging.

FID features: pytorch-fid's InceptionV3 (2048-d, randomly initialised: the speed is the same)
(c) plain: ``net(x)`` on an in-memory batch; (d) cxrgen: ``metrics.fid.extract`` reading a
memory-mapped uint8 array (grey -> 3 channels, resize to 299 inside the network).

Example (CPU, 32x32):
    uv run --frozen python benchmarks/bench_gan.py --size 32 --batch 8 --steps 6 --rounds 2
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cxrgen.data.classes import write_classes
from cxrgen.data.store import load_split
from cxrgen.gan.config import StarGANTrainConfig
from cxrgen.gan.stargan_losses import decay_ds, discriminator_loss, generator_loss
from cxrgen.gan.stargan_nets import StarGANNets, build_stargan
from cxrgen.gan.stargan_train import architecture, stargan_spec
from cxrgen.metrics.fid import InceptionFeatures, extract
from cxrgen.metrics.weights import build_inception
from cxrgen.training.loop import run_training, seeded
from cxrgen.training.step import EMA

K = 3


def make_store(root: Path, n: int, size: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    (root / "store").mkdir()
    (root / "split").mkdir()
    np.save(root / "store" / "images.npy", rng.integers(0, 256, (n, size, size), np.uint8))
    names = ["a", "b", "c"]
    pd.DataFrame(
        {
            "row": np.arange(n),
            "image_id": [str(i) for i in range(n)],
            "patient_id": [str(i) for i in range(n)],
            "class_name": [names[i % K] for i in range(n)],
            "label": np.arange(n) % K,
            "split": "train",
        }
    ).to_parquet(root / "split" / "split.parquet")
    write_classes(root / "split" / "classes.json", names)
    return root / "store", root / "split"


def build(cfg: StarGANTrainConfig, size: int) -> torch.nn.ModuleDict:
    arch = architecture(cfg, K, size, size)
    return seeded(0, lambda: torch.nn.ModuleDict(build_stargan(arch).modules()))


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def plain_loop(cfg: StarGANTrainConfig, size: int, steps: int, warmup: int, device: str) -> float:
    nets = build(cfg, size).to(device)
    parts = StarGANNets(**nets)
    opt = {
        n: torch.optim.Adam(
            m.parameters(),
            lr=cfg.mapping_lr if n == "mapping_network" else cfg.lr,
            betas=(cfg.adam_beta1, cfg.adam_beta2),
            weight_decay=cfg.weight_decay,
        )
        for n, m in nets.items()
    }
    emas = [EMA(nets[n], cfg.ema_decay) for n in ("generator", "mapping_network", "style_encoder")]
    b = cfg.batch_size

    def update(loss, *names):
        for o in opt.values():
            o.zero_grad(set_to_none=True)
        loss.backward()
        for n in names:
            opt[n].step()

    lambda_ds = cfg.lambda_ds
    x, ref, ref2 = (torch.rand(b, 1, size, size, device=device) * 2 - 1 for _ in range(3))
    y, y_trg = (torch.randint(0, K, (b,), device=device) for _ in range(2))
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            t0 = time.perf_counter()
        z, z2 = (
            torch.randn(b, cfg.latent_dim, device=device),
            torch.randn(b, cfg.latent_dim, device=device),
        )
        loss, _ = discriminator_loss(parts, x, y, y_trg, z_trg=z, lambda_reg=cfg.lambda_reg)
        update(loss, "discriminator")
        loss, _ = discriminator_loss(parts, x, y, y_trg, x_ref=ref, lambda_reg=cfg.lambda_reg)
        update(loss, "discriminator")
        loss, _ = generator_loss(parts, x, y, y_trg, z_trgs=(z, z2), lambda_ds=lambda_ds)
        update(loss, "generator", "mapping_network", "style_encoder")
        loss, _ = generator_loss(parts, x, y, y_trg, x_refs=(ref, ref2), lambda_ds=lambda_ds)
        update(loss, "generator")
        for ema in emas:
            ema.update()
        lambda_ds = decay_ds(lambda_ds, cfg.lambda_ds, cfg.ds_iter)
    sync(device)
    return steps * b / (time.perf_counter() - t0)


def project_loop(cfg: StarGANTrainConfig, size: int, warmup: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        store, split = make_store(Path(tmp), max(64, 4 * cfg.batch_size), size)
        data = load_split(store, split)
        nets = build(cfg, size)
        out = run_training(
            stargan_spec(nets, cfg), data, Path(tmp) / "run", cfg, stage="bench", progress=False
        )
    return float(1 / (1 / out.history["images_per_s"].iloc[warmup:]).mean())


def fid_features(size: int, n: int, batch: int, device: str) -> tuple[float, float]:
    net = build_inception(random_init=True).to(device)
    array = np.random.default_rng(0).integers(0, 256, (n, size, size), np.uint8)
    x = torch.rand(batch, 3, size, size, device=device)
    with torch.no_grad():
        net(x)  # warm-up
        sync(device)
        t0 = time.perf_counter()
        for _ in range(0, n, batch):
            net(x)[0].cpu()
        sync(device)
        plain = n / (time.perf_counter() - t0)
    extractor = InceptionFeatures(net, torch.device(device))
    t0 = time.perf_counter()
    features = extract(extractor, array, np.arange(n), batch, "bench", progress=False)
    sync(device)
    assert features.shape == (n, 2048)
    return plain, n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=6, help="timed GAN steps per loop")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--base-dim", type=int, default=16)
    p.add_argument("--max-conv-dim", type=int, default=64)
    p.add_argument("--downsamplings", type=int, default=2)
    p.add_argument("--fid-images", type=int, default=16)
    p.add_argument("--fid-batch", type=int, default=16)
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds; best is kept")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = StarGANTrainConfig(
        base_dim=args.base_dim,
        max_conv_dim=args.max_conv_dim,
        g_downsamplings=args.downsamplings,
        mapping_dim=128,
        batch_size=args.batch,
        max_steps=args.warmup + args.steps,
        log_every=1,
        checkpoint_every=10**9,
        device=args.device,
    )
    # alternate the loops and keep each one's best round: a shared machine's load varies
    plain = ours = fid_plain = fid_ours = 0.0
    for _ in range(args.rounds):
        plain = max(plain, plain_loop(cfg, args.size, args.steps, args.warmup, args.device))
        ours = max(ours, project_loop(cfg, args.size, args.warmup))
        a, b = fid_features(args.size, args.fid_images, args.fid_batch, args.device)
        fid_plain, fid_ours = max(fid_plain, a), max(fid_ours, b)
    print(
        f"StarGAN v2 base {args.base_dim} max {args.max_conv_dim} down {args.downsamplings}, "
        f"{args.size}x{args.size}, {K} domains, batch {args.batch}, {args.device}, "
        f"{torch.get_num_threads()} threads, {args.steps} timed steps, best of {args.rounds}"
    )
    print(f"GAN plain PyTorch loop     : {plain:8.2f} images/s")
    print(f"GAN cxrgen training        : {ours:8.2f} images/s")
    print(f"GAN ratio cxrgen/plain     : {ours / plain:8.2f}")
    print(
        f"FID plain InceptionV3 fwd  : {fid_plain:8.2f} images/s (2048-d, batch {args.fid_batch})"
    )
    print(f"FID cxrgen extract (memmap): {fid_ours:8.2f} images/s")
    print(f"FID ratio cxrgen/plain     : {fid_ours / fid_plain:8.2f}")


if __name__ == "__main__":
    main()
