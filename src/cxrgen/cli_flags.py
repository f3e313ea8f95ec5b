"""Command-line flags generated from a stage's config dataclass (``cxrgen.cli``).

One ``--kebab-name`` flag per field of the dataclass, with its own defaults; ``--config FILE``
reads a YAML mapping of the same keys, and flags override it.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from cxrgen.config import from_mapping


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


def add_evaluation_inputs(p: argparse.ArgumentParser, classifier_help: str) -> None:
    """The inputs the evaluate and figures commands share."""
    p.add_argument("--latents", required=True, type=Path, help="folder of the invert stage")
    p.add_argument(
        "--counterfactuals", required=True, type=Path, nargs="+",
        help="counterfactual folders, or a folder above them (every scores.parquet below)",
    )  # fmt: skip
    p.add_argument("--store", required=True, type=Path)
    p.add_argument("--classifier", type=Path, help=classifier_help)
