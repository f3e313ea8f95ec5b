"""The ``cxrgen`` command line: every pipeline stage runs from here as well as from Snakemake.

Stage options are generated from the stage's config dataclass, so a flag exists for every
config key (``--n-patients`` for ``n_patients``) and the defaults are the dataclass's own.
``--config FILE`` reads a YAML mapping of the same keys; flags override it.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from cxrgen import logs
from cxrgen.config import from_mapping
from cxrgen.errors import CxrgenError

log = logging.getLogger("cxrgen")


def _flag_type(hint: Any) -> tuple[dict[str, Any], str]:
    """argparse keyword arguments for a dataclass field type, and a metavar-ish description."""
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if origin in (typing.Union, types.UnionType):
        return _flag_type(args[0])
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}, "bool"
    if origin is tuple:
        inner = args[0] if args else str
        return {"nargs": "*", "type": inner}, inner.__name__
    if hint in (int, float, str):
        return {"type": hint}, hint.__name__
    if hint is Path:
        return {"type": Path}, "path"
    return {"type": str}, "str"


def add_config_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """One ``--kebab-name`` flag per field of the config dataclass ``cls``."""
    group = parser.add_argument_group(f"{cls.__name__} (config keys; see its docstring)")
    group.add_argument("--config", type=Path, help="YAML file with these keys (flags override)")
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        kwargs, _ = _flag_type(hints[field.name])
        default = field.default if field.default is not dataclasses.MISSING else None
        group.add_argument(
            "--" + field.name.replace("_", "-"),
            dest=f"cfg__{field.name}",
            default=argparse.SUPPRESS,
            help=f"default: {default!r}",
            **kwargs,
        )
    parser.set_defaults(config_cls=cls)


def config_from_args(args: argparse.Namespace) -> Any:
    mapping: dict[str, Any] = {}
    if getattr(args, "config", None):
        mapping.update(yaml.safe_load(Path(args.config).read_text()) or {})
    for key, value in vars(args).items():
        if key.startswith("cfg__"):
            mapping[key[5:]] = value
    return from_mapping(args.config_cls, mapping)


# --- commands --------------------------------------------------------------------------------


def cmd_phantoms(args: argparse.Namespace) -> None:
    from cxrgen import phantoms

    cfg = config_from_args(args)
    make = {
        "rsna": phantoms.make_rsna_phantoms,
        "ralo": phantoms.make_ralo_phantoms,
        "covidqu": phantoms.make_covidqu_phantoms,
    }[args.layout]
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
        train = _trainers()[args.command][1]
        kwargs = {"scheduler_dir": args.scheduler} if getattr(args, "scheduler", None) else {}
        if getattr(args, "checkpoints", None) is not None:
            kwargs["checkpoint_dir"] = args.checkpoints
        train(args.store, args.split, args.output, config_from_args(args), **kwargs)


def _trainers() -> dict[str, tuple[type, Callable]]:
    from cxrgen.classifier.config import ClassifierTrainConfig
    from cxrgen.classifier.train import train_classifier
    from cxrgen.diffusion.config import DiffusionTrainConfig
    from cxrgen.diffusion.train import train_diffusion
    from cxrgen.gan.config import DCGANTrainConfig, StarGANTrainConfig
    from cxrgen.gan.dcgan_train import train_dcgan
    from cxrgen.gan.stargan_train import train_stargan
    from cxrgen.lungseg.config import LungSegTrainConfig
    from cxrgen.lungseg.train import train_lungseg

    return {
        "train-diffusion": (DiffusionTrainConfig, train_diffusion),
        "train-classifier": (ClassifierTrainConfig, train_classifier),
        "train-stargan": (StarGANTrainConfig, train_stargan),
        "train-dcgan": (DCGANTrainConfig, train_dcgan),
        "train-lungseg": (LungSegTrainConfig, train_lungseg),
    }


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


def add_evaluation_inputs(p: argparse.ArgumentParser, classifier_help: str) -> None:
    """The inputs the evaluate and figures commands share."""
    p.add_argument("--latents", required=True, type=Path, help="folder of the invert stage")
    p.add_argument(
        "--counterfactuals", required=True, type=Path, nargs="+",
        help="counterfactual folders, or a folder above them (every scores.parquet below)",
    )  # fmt: skip
    p.add_argument("--store", required=True, type=Path)
    p.add_argument("--classifier", type=Path, help=classifier_help)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cxrgen", description=__doc__.splitlines()[0])
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("--log-file", type=Path, help="also append the log to this file")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from cxrgen.data.preprocess import PreprocessConfig
    from cxrgen.data.split import SplitConfig
    from cxrgen.phantoms import CovidPhantomConfig, PhantomConfig

    ph = sub.add_parser("phantoms", help="write the synthetic phantom data set")
    ph_sub = ph.add_subparsers(dest="layout", required=True, metavar="LAYOUT")
    for layout, cls, text in (
        ("rsna", PhantomConfig, "DICOM phantoms in the RSNA Pneumonia Detection layout"),
        ("ralo", PhantomConfig, "the same DICOM phantoms in the RALO layout (severity CSV only)"),
        ("covidqu", CovidPhantomConfig, "PNG phantoms in the COVID-QU-Ex folder layout"),
    ):
        p = ph_sub.add_parser(layout, help=text)
        p.add_argument("--output", required=True, type=Path, help="folder to write")
        add_config_flags(p, cls)
        p.set_defaults(func=cmd_phantoms)

    p = sub.add_parser("preprocess", help="DICOM / image folders -> images.npy + index tables")
    p.add_argument("--input", required=True, type=Path, help="folder tree of DICOM or images")
    p.add_argument("--output", required=True, type=Path, help="tensor store folder to write")
    p.add_argument("--threads", type=int, default=1, help="decoding threads")
    add_config_flags(p, PreprocessConfig)
    p.set_defaults(func=cmd_preprocess)

    p = sub.add_parser("split", help="patient-level stratified split of a tensor store")
    p.add_argument("--store", required=True, type=Path, help="tensor store folder (preprocess)")
    p.add_argument("--output", required=True, type=Path, help="split folder to write")
    add_config_flags(p, SplitConfig)
    p.set_defaults(func=cmd_split)
    for command, (cls, _) in _trainers().items():
        p = sub.add_parser(command, help=f"train ({cls.__name__}); re-running resumes")
        p.add_argument("--store", required=True, type=Path, help="tensor store folder")
        p.add_argument("--split", required=True, type=Path, help="split folder")
        p.add_argument("--output", required=True, type=Path, help="model folder to write")
        if command == "train-classifier":
            p.add_argument(
                "--scheduler", required=True, type=Path,
                help="the diffusion model's scheduler/ (the classifier's only noise schedule)",
            )  # fmt: skip
        if command in ("train-diffusion", "train-classifier", "train-lungseg"):
            p.add_argument("--checkpoints", type=Path, help="checkpoint folder")
        add_config_flags(p, cls)
        p.set_defaults(func=cmd_train)

    from cxrgen.gan.generate_synthetic import GenerateConfig
    from cxrgen.metrics.gan_metrics import GanMetricsConfig

    p = sub.add_parser("generate-synthetic", help="synthetic set from a trained GAN")
    p.add_argument("--model", required=True, type=Path, help="trained StarGAN or DCGAN folder")
    p.add_argument("--store", required=True, type=Path)
    # --split is the config key naming which split to translate
    p.add_argument("--split-dir", required=True, type=Path, help="split folder")
    p.add_argument("--output", required=True, type=Path)
    add_config_flags(p, GenerateConfig)
    p.set_defaults(func=cmd_generate)

    from cxrgen.counterfactual.config import METHODS, CounterfactualConfig
    from cxrgen.counterfactual.invert import InvertConfig

    p = sub.add_parser("invert", help="DDIM-invert a split's images to latents at depth L")
    p.add_argument("--model", required=True, type=Path, help="trained diffusion model folder")
    p.add_argument("--store", required=True, type=Path)
    p.add_argument("--split-dir", required=True, type=Path, help="split folder")
    p.add_argument("--output", required=True, type=Path, help="latents folder to write")
    add_config_flags(p, InvertConfig)
    p.set_defaults(func=cmd_invert)

    p = sub.add_parser("counterfactual", help="guided healthy counterfactuals of the latents")
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--scale", required=True, type=float, nargs="+", help="guidance scale(s)")
    p.add_argument("--latents", required=True, type=Path, help="folder of the invert stage")
    p.add_argument(
        "--model", required=True, type=Path, help="diffusion model / StarGAN folder (stargan)"
    )
    p.add_argument("--store", required=True, type=Path)
    p.add_argument("--classifier", type=Path, help="guidance classifier folder (method cg)")
    p.add_argument(
        "--first-pass-dir", type=Path,
        help="method msr: the first-pass counterfactual folder (default OUTPUT/<first_pass>)",
    )  # fmt: skip
    p.add_argument("--output", required=True, type=Path, help="writes OUTPUT/METHOD/SCALE/")
    add_config_flags(p, CounterfactualConfig)
    p.set_defaults(func=cmd_counterfactual)

    from cxrgen.evaluation.evaluate import EvaluateConfig

    p = sub.add_parser("evaluate", help="metrics of the counterfactuals of every method / scale")
    add_evaluation_inputs(p, "guidance classifier folder (reference row)")
    p.add_argument("--output", required=True, type=Path, help="metrics folder to write")
    p.add_argument("--lung-masks", type=Path, help="predict-lungseg's lung_masks.npy: per lung")
    add_config_flags(p, EvaluateConfig)
    p.set_defaults(func=cmd_evaluate)

    from cxrgen.evaluation.evaluation_figures import FiguresConfig

    p = sub.add_parser("figures", help="Fig. 3 / Fig. 4 / ROC / severity / Grad-CAM figures")
    add_evaluation_inputs(p, "guidance classifier folder (Grad-CAM)")
    p.add_argument("--metrics", required=True, type=Path, help="tables of the evaluate stage")
    p.add_argument("--output", required=True, type=Path, help="figure folder to write")
    add_config_flags(p, FiguresConfig)
    p.set_defaults(func=cmd_figures)

    from cxrgen.lungseg.command import add_predict_command

    add_predict_command(sub)  # predict-lungseg

    p = sub.add_parser("apply", help="a finished run's model on new images (no labels needed)")
    p.add_argument("--model-dir", required=True, type=Path, help="RESULTS/models/DATASET")
    p.add_argument("--input", required=True, type=Path, help="folder or file of DICOM/PNG/JPEG")
    p.add_argument("--output", required=True, type=Path)
    p.add_argument("--method", help="instead of the run's calibration-chosen method")
    p.add_argument("--scale", type=float, help="instead of the run's chosen scale")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser("run-summary", help="one table with every data set's headline numbers")
    p.add_argument("--evaluation", nargs="*", metavar="DATASET=SUMMARY_PARQUET")
    p.add_argument("--gan-metrics", nargs="*", metavar="DATASET=GAN_METRICS_PARQUET")
    p.add_argument("--output", required=True, type=Path)
    p.set_defaults(func=cmd_run_summary)

    p = sub.add_parser("gan-metrics", help="FID / LPIPS of synthetic sets")
    p.add_argument("--generated", nargs="+", required=True, metavar="NAME=DIR")
    p.add_argument("--store", required=True, type=Path)
    p.add_argument("--split", required=True, type=Path)
    p.add_argument("--output", required=True, type=Path)
    p.add_argument("--classifier", type=Path, help="guidance classifier folder (fid_cxr)")
    add_config_flags(p, GanMetricsConfig)
    p.set_defaults(func=cmd_gan_metrics)

    p = sub.add_parser("weights", help="fetch (download) or list (check) the FID/LPIPS weights")
    p.add_argument("action", choices=("download", "check"))
    p.add_argument("--dir", type=Path, help="folder instead of the torch hub cache")
    p.set_defaults(func=cmd_weights)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup(logging.WARNING if args.quiet else logging.INFO, args.log_file)
    func: Callable[[argparse.Namespace], None] = args.func
    try:
        func(args)
    except CxrgenError as exc:
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
