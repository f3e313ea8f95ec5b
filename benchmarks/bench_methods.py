"""Cost of each counterfactual method per image: UNet evaluations and seconds, side by side.

On a randomly initialised UNet and guidance classifier of the demo's architecture
(config.yaml: block_out_channels 16 32 64 128, attention at 16x16, 64x64 images; the speed
does not depend on the weights) and the DDPM schedule of build_scheduler, every method runs
through the library's own code path (cxrgen.counterfactual.ddim.decode with the predictors
of cxrgen.counterfactual.guidance and the hooks of cxrgen.counterfactual.resample) on the
same --images images in batches of --batch-size:

* invert: the invert stage's DDIM inversion plus the reconstruction decode (shared by every
  diffusion method; counted once);
* cfg, renoise, thor, msr at the demo's --steps / --depth, and cg (UNet + classifier
  gradient per step);
* cg and cfg at Wolleb et al.'s setting (100 DDIM steps, L = 500), and their inversion.

UNet evaluations per image are counted by wrapping the UNet (a batched CFG forward on 2B
images counts 2 per image); msr's count excludes its first pass (a job it reads) and adds
it (cg, the demo's, or cfg) at the end of its line; cg's count is of UNet passes only, each
step also takes one classifier forward and backward. Each time is the median of --rounds
after one warm-up; the figures are ratios to cfg measured in this one run, plus seconds per image on
this CPU (print ``lscpu`` model name beside them; an absolute time holds for an idle machine
of that model only).

Example (2-core CPU: about 18 minutes, most of it the 100-step settings):
    uv run python benchmarks/bench_methods.py --images 32 --rounds 2 --steps 12
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from cxrgen.classifier.model import NoiseAwareClassifier
from cxrgen.counterfactual import guidance, resample
from cxrgen.counterfactual.ddim import decode, invert, trajectory
from cxrgen.diffusion.model import build_scheduler, build_unet


class Counted(torch.nn.Module):
    """The UNet, counting the images it evaluates."""

    def __init__(self, unet):
        super().__init__()
        self.unet, self.images = unet, 0
        self.config = unet.config

    def forward(self, x, t, class_labels=None):
        self.images += x.shape[0]
        return self.unet(x, t, class_labels=class_labels)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--depth", type=float, default=0.5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    size, widths = 64, (16, 32, 64, 128)
    unet = Counted(build_unet((size, size), 2, widths, 1, (16,), 0.0, norm_num_groups=8)).eval()
    classifier = NoiseAwareClassifier(2, size, block_out_channels=widths, norm_num_groups=8,
                                      attention_head_dim=16).eval()  # fmt: skip
    scheduler = build_scheduler(1000, "linear")
    x0 = torch.rand(args.images, 1, size, size) * 2 - 1
    rows = np.arange(args.images)
    target = torch.zeros(args.batch_size, dtype=torch.long)
    null = torch.full_like(target, guidance.null_label(unet))

    def run(method: str, steps: int, depth: float) -> None:
        traj = trajectory(scheduler, steps, depth)
        for a in range(0, args.images, args.batch_size):
            x, n = x0[a : a + args.batch_size], min(args.batch_size, args.images - a)
            tg, nl = target[:n], null[:n]
            if method == "invert":
                latent = invert(guidance.conditional(unet, nl), traj, x)
                decode(guidance.conditional(unet, nl), traj, latent)
                continue
            latent = resample.renoise_start(x, torch.randn_like(x), traj)  # stands in for it
            if method == "cg":
                predict = guidance.classifier_guided(unet, classifier, scheduler.alphas_cumprod,
                                                     nl, tg, 10.0)  # fmt: skip
            else:
                predict = guidance.classifier_free(unet, tg, 1.0)
            fresh = None
            if method in resample.STOCHASTIC:
                fresh = resample.image_noise(rows[a : a + n], (size, size), 0)
            mask = torch.zeros_like(x)
            mask[..., 20:40, 10:30] = 1
            start, hook = resample.start_and_hook(method, x, latent, traj, fresh, mask,
                                                  sigma_px=0.03 * size)  # fmt: skip
            decode(predict, traj, start, step_hook=hook)

    cases = [
        ("invert (shared)", "invert", args.steps, args.depth),
        ("cfg", "cfg", args.steps, args.depth),
        ("cg", "cg", args.steps, args.depth),
        ("renoise", "renoise", args.steps, args.depth),
        ("thor", "thor", args.steps, args.depth),
        ("msr", "msr", args.steps, args.depth),
        ("invert, Wolleb (100 steps, L=500)", "invert", 100, 0.5),
        ("cg, Wolleb (100 steps, L=500)", "cg", 100, 0.5),
        ("cfg, 100 steps, L=500", "cfg", 100, 0.5),
    ]
    results = {}
    for name, method, steps, depth in cases:
        unet.images = 0
        run(method, steps, depth)  # warm-up, and the count
        evals = unet.images / args.images
        times = []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            run(method, steps, depth)
            times.append((time.perf_counter() - t0) / args.images)
        results[name] = (evals, statistics.median(times))
    base = results["cfg"][1]
    print(f"{args.images} images, batch {args.batch_size}, {args.threads} threads, 64x64, "
          f"demo: {args.steps} steps to depth {args.depth}")  # fmt: skip
    print(f"{'method':36s} {'UNet evals/img':>15s} {'s/img':>8s} {'x cfg':>7s}")
    for name, (evals, sec) in results.items():
        extra = ""
        if name == "msr":  # plus the first pass it reads: the demo's cg 10, or cfg
            extra = "".join(
                f"   (+ {first} first pass: {evals + results[first][0]:.0f} evals, "
                f"{sec + results[first][1]:.3f} s/img)"
                for first in ("cg", "cfg")
            )
        print(f"{name:36s} {evals:15.0f} {sec:8.3f} {sec / base:7.2f}{extra}")


if __name__ == "__main__":
    main()
