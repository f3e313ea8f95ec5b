"""What each ``cxrgen`` command runs: one function per command, importing its stage on call."""

from __future__ import annotations

import argparse
import importlib
import logging
from pathlib import Path
from typing import Any

from cxrgen.cli_flags import config_from_args
from cxrgen.errors import CxrgenError

log = logging.getLogger("cxrgen")


def cmd_phantoms(args: argparse.Namespace) -> None:
    from cxrgen import phantoms

    cfg = config_from_args(args)
    _, make = phantoms.LAYOUTS[args.layout]
    manifest = make(args.output, cfg)
    log.info("wrote %d phantom images to %s", len(manifest), args.output)


def cmd_preprocess(args: argparse.Namespace) -> None:
    from cxrgen.data.preprocess import preprocess

    result = preprocess(args.input, args.output, config_from_args(args), threads=args.threads)
    log.info("%s", result)


def cmd_split(args: argparse.Namespace) -> None:
    from cxrgen.data.split import run_split

    run_split(args.store, args.output, config_from_args(args))


def cmd_train(args: argparse.Namespace) -> None:
    """train-diffusion / train-classifier / train-stargan / train-dcgan / train-lungseg."""
    from cxrgen.devices import claim_device

    with claim_device():
        train = load(TRAINERS[args.command][1])
        kwargs = {"scheduler_dir": args.scheduler} if getattr(args, "scheduler", None) else {}
        if getattr(args, "checkpoints", None) is not None:
            kwargs["checkpoint_dir"] = args.checkpoints
        train(args.store, args.split, args.output, config_from_args(args), **kwargs)


# command -> ("module:config class", "module:trainer"), imported only when used: the parser
# needs the config classes, the command only its own trainer
TRAINERS = {
    "train-diffusion": ("cxrgen.diffusion.config:DiffusionTrainConfig",
                        "cxrgen.diffusion.train:train_diffusion"),
    "train-classifier": ("cxrgen.classifier.config:ClassifierTrainConfig",
                         "cxrgen.classifier.train:train_classifier"),
    "train-stargan": ("cxrgen.gan.config:StarGANTrainConfig",
                      "cxrgen.gan.stargan_train:train_stargan"),
    "train-dcgan": ("cxrgen.gan.config:DCGANTrainConfig", "cxrgen.gan.dcgan_train:train_dcgan"),
    "train-lungseg": ("cxrgen.lungseg.config:LungSegTrainConfig",
                      "cxrgen.lungseg.train:train_lungseg"),
}  # fmt: skip
TRAIN_COMMANDS = tuple(TRAINERS)


def load(ref: str) -> Any:
    """The object ``module:name`` names."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def cmd_generate(args: argparse.Namespace) -> None:
    from cxrgen.gan.generate_synthetic import generate_synthetic

    generate_synthetic(args.model, args.store, args.split_dir, args.output, config_from_args(args))


def cmd_gan_metrics(args: argparse.Namespace) -> None:
    from cxrgen.metrics.gan_metrics import evaluate_gan

    generated = dict(item.split("=", 1) for item in args.generated)
    evaluate_gan(
        generated, args.store, args.split, args.output, config_from_args(args), args.classifier
    )


def cmd_invert(args: argparse.Namespace) -> None:
    from cxrgen.counterfactual.invert import invert_split
    from cxrgen.devices import claim_device

    with claim_device():
        invert_split(args.model, args.store, args.split_dir, args.output, config_from_args(args))


def cmd_counterfactual(args: argparse.Namespace) -> None:
    from cxrgen.counterfactual.config import scale_name
    from cxrgen.counterfactual.counterfactual import make_counterfactuals
    from cxrgen.devices import claim_device

    cfg = config_from_args(args)
    # method msr: the first pass is OUTPUT/METHOD/SCALE of cfg.first_pass unless named
    first_method, first_scale = cfg.first_pass_setting
    first_pass = args.first_pass_dir or args.output / first_method / scale_name(first_scale)
    with claim_device():
        for scale in args.scale:
            out = args.output / args.method / scale_name(scale)
            make_counterfactuals(
                args.method, scale, args.latents, args.model, args.store, out, cfg,
                classifier_dir=args.classifier,
                first_pass_dir=first_pass if args.method == "msr" else None,
            )  # fmt: skip


def counterfactual_dirs(roots: list[Path]) -> list[Path]:
    """Every folder holding a scores.parquet at or below the given folders."""
    dirs = sorted({p.parent for root in roots for p in root.glob("**/scores.parquet")})
    if not dirs:
        raise CxrgenError(f"no scores.parquet under {[str(p) for p in roots]}")
    return dirs


def cmd_evaluate(args: argparse.Namespace) -> None:
    from cxrgen.evaluation.evaluate import evaluate

    dirs = counterfactual_dirs(args.counterfactuals)
    evaluate(args.latents, dirs, args.store, args.output, config_from_args(args),
             args.classifier, lung_masks=args.lung_masks)  # fmt: skip


def cmd_figures(args: argparse.Namespace) -> None:
    from cxrgen.evaluation.evaluation_figures import write_figures

    dirs = counterfactual_dirs(args.counterfactuals)
    write_figures(
        args.latents, dirs, args.store, args.metrics, args.output, config_from_args(args),
        args.classifier,
    )  # fmt: skip


def cmd_run_summary(args: argparse.Namespace) -> None:
    from cxrgen.evaluation.run_summary import run_summary

    def pairs(items: list[str]) -> dict[str, str]:
        return dict(item.split("=", 1) for item in items or [])

    run_summary(pairs(args.evaluation), pairs(args.gan_metrics), args.output)


def cmd_weights(args: argparse.Namespace) -> None:
    from cxrgen.metrics import weights

    if args.action == "download":
        weights.download_weights(args.dir, progress=not args.quiet)
    checks = weights.check_weights([args.dir] if args.dir else [])
    for check in checks:
        (log.info if check.ok else log.warning)("%s", check.line())
    if not all(check.ok for check in checks):
        raise CxrgenError("weight files missing or corrupt: run `cxrgen weights download`")


def cmd_apply(args: argparse.Namespace) -> None:
    from cxrgen.apply import apply

    apply(args.model_dir, args.input, args.output, args.method, args.scale, args.device,
          not args.quiet)  # fmt: skip
