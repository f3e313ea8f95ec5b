"""Images/s of batched DDIM inversion + CFG counterfactuals against a per-image loop; CFG cost.

What it measures, on one randomly initialised class-conditional UNet
(cxrgen.diffusion.model.build_unet; the speed does not depend on the weights) and the DDPM
schedule of build_scheduler, with the DDIM trajectory of cxrgen.counterfactual.ddim
(--steps steps to depth --depth):

1. Inversion + counterfactual throughput (images/s), the same images through both:
   (a) cxrgen, batched: per batch of --batch-size images, ``ddim.invert`` with
       ``guidance.conditional`` (the invert stage: each image's own label), then
       ``ddim.decode`` with ``guidance.classifier_free`` toward the target class (the
       counterfactual stage: conditional and null passes as one forward on 2B images);
   (b) per-image reference, in the style of Wolleb et al.'s diffusion-anomaly code: one
       image at a time, the DDIM step written out as guided_diffusion's ddim_reverse_sample /
       ddim_sample (eps -> x0_hat -> next state, alpha_bar looked up per step), the CFG
       conditional and unconditional passes as two separate UNet forwards.
   The DDIM move is written out rather than driven through diffusers' DDIMScheduler /
   DDIMInverseScheduler.step, because those space their steps over the whole schedule (and
   the inverse one runs to T) while the trajectory stops at depth L: with them the two loops
   would visit other timesteps and compute something else. Both loops' counterfactuals are
   compared (max |difference| printed, asserted small) so the ratio compares one computation.
2. One CFG noise prediction, same x (a batch of --batch-size), same t, repeated: the library's
   ``guidance.classifier_free`` (unet on cat([x, x]) with cat([labels, null])) against two
   forwards (conditional, then null) combined by the same formula. Asserts both give the same
   eps (np.allclose, atol 1e-5) before timing.

Timings use time.perf_counter after a warm-up call; each figure is the median of --rounds
(throughput) or --repeats (CFG call), the two variants alternating. With --device cuda a
bf16 autocast run (guidance's precision="bf16") is added; the fp32 runs there have TF32 off.
With --size 256 a projected wall time for the RSNA preset (2,973 validation images; 50 DDIM
steps inversion + 50 reconstruction + 50 per counterfactual) is printed from the measured
per-image-step costs: a projection, not a measurement, and for the UNet measured here; the
preset's UNet is --widths 128 128 256 256 512 512 --layers 2 --attention 32 16 --head-dim 64
--groups 32 (about 115M parameters).

Examples (CPU, 64x64, one thread: about 80 s on a 2-core machine; 256 px: a projection):
    uv run python benchmarks/bench_counterfactual.py
    uv run python benchmarks/bench_counterfactual.py --size 256 --images 4 --batch-size 4 --steps 4
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from diffusers import UNet2DModel

from cxrgen.counterfactual import guidance
from cxrgen.counterfactual.ddim import Trajectory, decode, invert, trajectory
from cxrgen.diffusion.model import build_scheduler, build_unet, resolutions

TARGET = 0  # the class every counterfactual is decoded toward ("Normal")
RSNA_IMAGES = 2973  # validation images of the RSNA preset (1770 Normal + 1203 Lung Opacity)
RSNA_STEPS = 50


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable, device: torch.device, *args) -> tuple[float, object]:
    """(seconds, fn(*args)), the device synchronised before and after."""
    sync(device)
    t0 = time.perf_counter()
    out = fn(*args)
    sync(device)
    return time.perf_counter() - t0, out


def batched(
    unet: UNet2DModel,
    traj: Trajectory,
    x0: torch.Tensor,
    labels: torch.Tensor,
    scale: float,
    batch_size: int,
    precision: str,
) -> tuple[torch.Tensor, float, float]:
    """cxrgen: invert then CFG-decode per batch; (counterfactuals, s inverting, s decoding)."""
    device = next(unet.parameters()).device
    targets = torch.full_like(labels, TARGET)
    out, t_inv, t_dec = [], 0.0, 0.0
    for a in range(0, len(x0), batch_size):
        b = min(a + batch_size, len(x0))
        cond = guidance.conditional(unet, labels[a:b], precision)
        cfg = guidance.classifier_free(unet, targets[a:b], scale, precision)
        dt, latent = timed(invert, device, cond, traj, x0[a:b].to(device))
        t_inv += dt
        dt, cf = timed(decode, device, cfg, traj, latent)
        t_dec += dt
        out.append(cf.cpu())
    return torch.cat(out), t_inv, t_dec


def per_image(
    unet: UNet2DModel,
    alphas_cumprod: torch.Tensor,
    traj: Trajectory,
    x0: torch.Tensor,
    labels: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """Reference: one image at a time, two UNet forwards per CFG step, DDIM written out."""
    device = next(unet.parameters()).device
    null = torch.tensor([guidance.null_label(unet)], device=device)
    target = torch.tensor([TARGET], device=device)
    # alpha_bar of every trajectory state (state 0: the clean image, alpha_bar = 1)
    bars = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod.double()])
    states = torch.tensor([0, *(t + 1 for t in traj.timesteps)])
    bar = bars[states].float().to(device)
    out = []
    with torch.no_grad():
        for i in range(len(x0)):
            x = x0[i : i + 1].float().to(device)
            y = labels[i : i + 1].to(device)
            for s in range(traj.steps):  # ddim_reverse_sample: image -> latent
                t = torch.tensor([traj.eval_timestep(s)], device=device)
                eps = unet(x, t, class_labels=y).sample
                x0_hat = (x - (1 - bar[s]).sqrt() * eps) / bar[s].sqrt()
                x = bar[s + 1].sqrt() * x0_hat + (1 - bar[s + 1]).sqrt() * eps
            for s in range(traj.steps, 0, -1):  # ddim_sample with CFG: latent -> image
                t = torch.tensor([traj.eval_timestep(s)], device=device)
                eps_c = unet(x, t, class_labels=target).sample
                eps_u = unet(x, t, class_labels=null).sample
                eps = eps_c + scale * (eps_c - eps_u)
                x0_hat = (x - (1 - bar[s]).sqrt() * eps) / bar[s].sqrt()
                x = bar[s - 1].sqrt() * x0_hat + (1 - bar[s - 1]).sqrt() * eps
            out.append(x.cpu())
    return torch.cat(out)


def two_forwards(unet: UNet2DModel, labels: torch.Tensor, scale: float) -> Callable:
    """CFG as the reference implementations do it: conditional, then unconditional forward."""
    null = torch.full_like(labels, guidance.null_label(unet))

    def predict(x: torch.Tensor, t: int) -> torch.Tensor:
        with torch.no_grad():
            cond = unet(x, t, class_labels=labels).sample.float()
            uncond = unet(x, t, class_labels=null).sample.float()
        return cond + scale * (cond - uncond)

    return predict


def median_calls(fns: list[Callable], repeats: int, device: torch.device) -> list[float]:
    """Median seconds per call of each fn, after a warm-up call, the fns alternating."""
    for fn in fns:
        fn()
    times = [[timed(fn, device)[0] for fn in fns] for _ in range(repeats)]
    return [statistics.median(column) for column in zip(*times, strict=True)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--images", type=int, default=16, help="images through both loops")
    p.add_argument("--batch-size", type=int, default=16, help="images per batch (cxrgen)")
    p.add_argument("--steps", type=int, default=10, help="DDIM steps each way")
    p.add_argument("--depth", type=float, default=0.5, help="L as a fraction of T")
    p.add_argument("--scale", type=float, default=3.0, help="CFG weight w")
    p.add_argument("--rounds", type=int, default=3, help="alternating throughput rounds")
    p.add_argument("--repeats", type=int, default=5, help="timed CFG calls per variant")
    p.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64, 128])
    p.add_argument("--layers", type=int, default=1, help="layers_per_block")
    p.add_argument(
        "--attention",
        type=int,
        nargs="*",
        default=None,
        help="attention resolutions (16 if a level, else the smallest)",
    )
    p.add_argument("--groups", type=int, default=8, help="norm_num_groups")
    p.add_argument("--head-dim", type=int, default=16, help="attention_head_dim")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":  # true fp32, so that the fp32 loops can be compared to 1e-5
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    sides = resolutions(args.size, len(args.widths))
    attention = args.attention if args.attention is not None else [16 if 16 in sides else sides[-1]]

    torch.manual_seed(0)
    unet = build_unet(
        (args.size, args.size), 2, args.widths, args.layers, attention, 0.0,
        args.groups, args.head_dim,
    ).to(device).eval()  # fmt: skip
    scheduler = build_scheduler()
    traj = trajectory(scheduler, args.steps, args.depth)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(args.images, 1, args.size, args.size, generator=gen) * 2 - 1
    labels = torch.arange(args.images) % 2
    n, s = args.images, args.steps
    print(
        f"UNet {tuple(args.widths)} x{args.layers}, attention {tuple(attention)}, "
        f"{args.size}x{args.size}, {n} images, batch {args.batch_size}, {s} DDIM steps to "
        f"t = {traj.depth_timestep}, CFG w = {args.scale:g}, {args.device}, "
        f"{torch.get_num_threads()} threads"
    )

    # 1. throughput: warm up both on one image, then alternate rounds, medians
    batched(unet, traj, x0[:1], labels[:1], args.scale, 1, "fp32")
    per_image(unet, scheduler.alphas_cumprod, traj, x0[:1], labels[:1], args.scale)
    rounds_b, rounds_p, inv_costs, dec_costs = [], [], [], []
    for _ in range(args.rounds):
        t_b, (cf_b, t_inv, t_dec) = timed(
            lambda: batched(unet, traj, x0, labels, args.scale, args.batch_size, "fp32"), device
        )
        t_p, cf_p = timed(
            lambda: per_image(unet, scheduler.alphas_cumprod, traj, x0, labels, args.scale),
            device,
        )
        rounds_b.append(n / t_b)
        rounds_p.append(n / t_p)
        inv_costs.append(t_inv / (n * s))
        dec_costs.append(t_dec / (n * s))
    diff = float((cf_b - cf_p).abs().max())
    assert diff < 1e-3, f"batched and per-image counterfactuals differ by {diff}"
    ips_b, ips_p = statistics.median(rounds_b), statistics.median(rounds_p)
    print(f"invert + CFG counterfactual, median of {args.rounds} rounds (max |diff| {diff:.1e}):")
    print(f"  per-image loop (2 forwards/CFG step) : {ips_p:8.2f} images/s")
    print(f"  cxrgen batched (invert + decode)     : {ips_b:8.2f} images/s")
    print(f"  ratio batched / per-image            : {ips_b / ips_p:8.2f}")

    # 2. one CFG eps: single batched forward against two forwards, same x and t
    b = min(args.batch_size, n)
    x = x0[:b].to(device)
    t = traj.timesteps[len(traj.timesteps) // 2]
    targets = torch.full((b,), TARGET)
    one = guidance.classifier_free(unet, targets, args.scale)
    two = two_forwards(unet, targets.to(device), args.scale)
    eps_one, eps_two = one(x, t).cpu().numpy(), two(x, t).cpu().numpy()
    assert np.allclose(eps_one, eps_two, atol=1e-5), np.abs(eps_one - eps_two).max()
    t_one, t_two = median_calls([lambda: one(x, t), lambda: two(x, t)], args.repeats, device)
    print(f"CFG eps for {b} images at t = {t}, median of {args.repeats} calls:")
    print(f"  two forwards (cond, uncond)          : {t_two * 1e3:8.1f} ms/call")
    print(f"  one forward on cat([x, x])           : {t_one * 1e3:8.1f} ms/call")
    print(f"  ratio two / one (speed-up)           : {t_two / t_one:8.2f}")

    if device.type == "cuda":
        batched(unet, traj, x0[:1], labels[:1], args.scale, 1, "bf16")
        t_16, (cf_16, _, _) = timed(
            lambda: batched(unet, traj, x0, labels, args.scale, args.batch_size, "bf16"), device
        )
        one16 = guidance.classifier_free(unet, targets, args.scale, "bf16")
        (t_one16,) = median_calls([lambda: one16(x, t)], args.repeats, device)
        print("bf16 autocast (precision='bf16'):")
        print(f"  cxrgen batched                       : {n / t_16:8.2f} images/s")
        print(f"  ratio bf16 / fp32 batched            : {n / t_16 / ips_b:8.2f}")
        print(f"  CFG one forward                      : {t_one16 * 1e3:8.1f} ms/call")
        print(f"  max |bf16 - fp32| counterfactual     : {float((cf_16 - cf_b).abs().max()):.1e}")

    if args.size == 256:
        c_inv, c_dec = statistics.median(inv_costs), statistics.median(dec_costs)
        inv = RSNA_IMAGES * RSNA_STEPS * c_inv
        print(
            f"PROJECTION (not measured) for the RSNA preset, {RSNA_IMAGES} images at 256x256, "
            f"from the measured per-image-step costs of this UNet on {args.device} "
            f"({c_inv * 1e3:.1f} ms conditional, {c_dec * 1e3:.1f} ms CFG, batch "
            f"{args.batch_size}, fp32):"
        )
        print(f"  inversion, {RSNA_STEPS} steps                : {inv / 3600:8.2f} h")
        print(f"  reconstruction, {RSNA_STEPS} steps           : {inv / 3600:8.2f} h")
        cf = RSNA_IMAGES * RSNA_STEPS * c_dec
        print(f"  each CFG counterfactual, {RSNA_STEPS} steps  : {cf / 3600:8.2f} h")


if __name__ == "__main__":
    main()
