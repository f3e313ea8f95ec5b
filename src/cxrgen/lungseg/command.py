"""``cxrgen predict-lungseg``: the command of :func:`cxrgen.lungseg.predict.write_predicted_masks`
(its parser lives here so that cli.py stays a short list of the stages)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_predict_command(sub) -> None:
    """Add ``predict-lungseg`` to the ``cxrgen`` subcommands ``sub``."""
    p = sub.add_parser(
        "predict-lungseg", help="lung masks of any store (+ their Dice where it has true masks)"
    )
    p.add_argument("--model", required=True, type=Path, help="lung segmenter (train-lungseg)")
    p.add_argument("--store", required=True, type=Path, help="tensor store (never written)")
    p.add_argument("--output", required=True, type=Path, help="folder: lung_masks.npy, Dice")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--batch-size", type=int, default=64)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from cxrgen.devices import claim_device
    from cxrgen.lungseg.predict import write_predicted_masks

    with claim_device():
        write_predicted_masks(args.model, args.store, args.output, args.device, args.batch_size)
