"""The ``cxrgen`` command line: every pipeline stage runs from here as well as from Snakemake.

Stage options are generated from the stage's config dataclass, so a flag exists for every
config key (``--n-patients`` for ``n_patients``) and the defaults are the dataclass's own.
``--config FILE`` reads a YAML mapping of the same keys; flags override it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from cxrgen import commands, logs
from cxrgen.cli_flags import add_config_flags, add_evaluation_inputs
from cxrgen.errors import CxrgenError

log = logging.getLogger("cxrgen")


# The parser is built per command: each section imports only its own stage's config (the
# configs pull in torch and diffusers), so `cxrgen preprocess` starts without them.


def _add_phantoms(sub) -> None:
    from cxrgen.phantoms import LAYOUTS

    texts = {
        "rsna": "DICOM phantoms in the RSNA Pneumonia Detection layout",
        "ralo": "the same DICOM phantoms in the RALO layout (severity CSV only)",
        "covidqu": "PNG phantoms in the COVID-QU-Ex folder layout",
    }
    ph = sub.add_parser("phantoms", help="write the synthetic phantom data set")
    ph_sub = ph.add_subparsers(dest="layout", required=True, metavar="LAYOUT")
    for layout, (cls, _) in LAYOUTS.items():
        p = ph_sub.add_parser(layout, help=texts[layout])
        p.add_argument("--output", required=True, type=Path, help="folder to write")
        add_config_flags(p, cls)
        p.set_defaults(func=commands.cmd_phantoms)


def _add_preprocess(sub) -> None:
    from cxrgen.data.preprocess_config import PreprocessConfig

    p = sub.add_parser("preprocess", help="DICOM / image folders -> images.npy + index tables")
    p.add_argument("--input", required=True, type=Path, help="folder tree of DICOM or images")
    p.add_argument("--output", required=True, type=Path, help="tensor store folder to write")
    p.add_argument("--threads", type=int, default=1, help="decoding threads")
    add_config_flags(p, PreprocessConfig)
    p.set_defaults(func=commands.cmd_preprocess)


def _add_split(sub) -> None:
    from cxrgen.data.split import SplitConfig

    p = sub.add_parser("split", help="patient-level stratified split of a tensor store")
    p.add_argument("--store", required=True, type=Path, help="tensor store folder (preprocess)")
    p.add_argument("--output", required=True, type=Path, help="split folder to write")
    add_config_flags(p, SplitConfig)
    p.set_defaults(func=commands.cmd_split)


def _add_train(sub) -> None:
    for command, (config_ref, _) in commands.TRAINERS.items():
        cls = commands.load(config_ref)
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
        p.set_defaults(func=commands.cmd_train)


def _add_generate(sub) -> None:
    from cxrgen.gan.generate_synthetic import GenerateConfig

    p = sub.add_parser("generate-synthetic", help="synthetic set from a trained GAN")
    p.add_argument("--model", required=True, type=Path, help="trained StarGAN or DCGAN folder")
    p.add_argument("--store", required=True, type=Path)
    # --split is the config key naming which split to translate
    p.add_argument("--split-dir", required=True, type=Path, help="split folder")
    p.add_argument("--output", required=True, type=Path)
    add_config_flags(p, GenerateConfig)
    p.set_defaults(func=commands.cmd_generate)


def _add_invert(sub) -> None:
    from cxrgen.counterfactual.invert import InvertConfig

    p = sub.add_parser("invert", help="DDIM-invert a split's images to latents at depth L")
    p.add_argument("--model", required=True, type=Path, help="trained diffusion model folder")
    p.add_argument("--store", required=True, type=Path)
    p.add_argument("--split-dir", required=True, type=Path, help="split folder")
    p.add_argument("--output", required=True, type=Path, help="latents folder to write")
    add_config_flags(p, InvertConfig)
    p.set_defaults(func=commands.cmd_invert)


def _add_counterfactual(sub) -> None:
    from cxrgen.counterfactual.config import METHODS, CounterfactualConfig

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
    p.set_defaults(func=commands.cmd_counterfactual)


def _add_evaluate(sub) -> None:
    from cxrgen.evaluation.evaluate import EvaluateConfig

    p = sub.add_parser("evaluate", help="metrics of the counterfactuals of every method / scale")
    add_evaluation_inputs(p, "guidance classifier folder (reference row)")
    p.add_argument("--output", required=True, type=Path, help="metrics folder to write")
    p.add_argument("--lung-masks", type=Path, help="predict-lungseg's lung_masks.npy: per lung")
    add_config_flags(p, EvaluateConfig)
    p.set_defaults(func=commands.cmd_evaluate)


def _add_figures(sub) -> None:
    from cxrgen.evaluation.evaluation_figures import FiguresConfig

    p = sub.add_parser("figures", help="Fig. 3 / Fig. 4 / ROC / severity / Grad-CAM figures")
    add_evaluation_inputs(p, "guidance classifier folder (Grad-CAM)")
    p.add_argument("--metrics", required=True, type=Path, help="tables of the evaluate stage")
    p.add_argument("--output", required=True, type=Path, help="figure folder to write")
    add_config_flags(p, FiguresConfig)
    p.set_defaults(func=commands.cmd_figures)


def _add_predict(sub) -> None:
    from cxrgen.lungseg.command import add_predict_command

    add_predict_command(sub)  # predict-lungseg


def _add_apply(sub) -> None:
    p = sub.add_parser("apply", help="a finished run's model on new images (no labels needed)")
    p.add_argument("--model-dir", required=True, type=Path, help="RESULTS/models/DATASET")
    p.add_argument("--input", required=True, type=Path, help="folder or file of DICOM/PNG/JPEG")
    p.add_argument("--output", required=True, type=Path)
    p.add_argument("--method", help="instead of the run's calibration-chosen method")
    p.add_argument("--scale", type=float, help="instead of the run's chosen scale")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=commands.cmd_apply)


def _add_summary(sub) -> None:
    p = sub.add_parser("run-summary", help="one table with every data set's headline numbers")
    p.add_argument("--evaluation", nargs="*", metavar="DATASET=SUMMARY_PARQUET")
    p.add_argument("--gan-metrics", nargs="*", metavar="DATASET=GAN_METRICS_PARQUET")
    p.add_argument("--output", required=True, type=Path)
    p.set_defaults(func=commands.cmd_run_summary)


def _add_ganmetrics(sub) -> None:
    from cxrgen.metrics.gan_metrics import GanMetricsConfig

    p = sub.add_parser("gan-metrics", help="FID / LPIPS of synthetic sets")
    p.add_argument("--generated", nargs="+", required=True, metavar="NAME=DIR")
    p.add_argument("--store", required=True, type=Path)
    p.add_argument("--split", required=True, type=Path)
    p.add_argument("--output", required=True, type=Path)
    p.add_argument("--classifier", type=Path, help="guidance classifier folder (fid_cxr)")
    add_config_flags(p, GanMetricsConfig)
    p.set_defaults(func=commands.cmd_gan_metrics)


def _add_weights(sub) -> None:
    p = sub.add_parser("weights", help="fetch (download) or list (check) the FID/LPIPS weights")
    p.add_argument("action", choices=("download", "check"))
    p.add_argument("--dir", type=Path, help="folder instead of the torch hub cache")
    p.set_defaults(func=commands.cmd_weights)


SECTIONS: tuple[tuple[tuple[str, ...], Callable], ...] = (
    (("phantoms",), _add_phantoms),
    (("preprocess",), _add_preprocess),
    (("split",), _add_split),
    (commands.TRAIN_COMMANDS, _add_train),
    (("generate-synthetic",), _add_generate),
    (("invert",), _add_invert),
    (("counterfactual",), _add_counterfactual),
    (("evaluate",), _add_evaluate),
    (("figures",), _add_figures),
    (("predict-lungseg",), _add_predict),
    (("apply",), _add_apply),
    (("run-summary",), _add_summary),
    (("gan-metrics",), _add_ganmetrics),
    (("weights",), _add_weights),
)


def command_name(argv: list[str]) -> str | None:
    """The command of ``argv`` (the first word that is no option or option value), or None."""
    words = iter(argv)
    for word in words:
        if word == "--log-file":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or only of ``command`` (what ``main`` builds)."""
    parser = argparse.ArgumentParser(prog="cxrgen", description=__doc__.splitlines()[0])
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("--log-file", type=Path, help="also append the log to this file")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    known = any(command in names for names, _ in SECTIONS)
    for names, add in SECTIONS:
        if not known or command in names:
            add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(command_name(argv)).parse_args(argv)
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
