"""Typed stage configs: a config.yaml section becomes a frozen dataclass.

Each stage module defines its own frozen dataclass (the constructor signature
is the documentation of its keys, checks live in ``__post_init__``);
:func:`from_mapping` builds one from a plain mapping and rejects unknown keys
with a message that names them, so a typo never silently falls back to a
default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from cxrgen.errors import ConfigError

T = TypeVar("T")


def from_mapping(cls: type[T], mapping: Mapping[str, Any] | None, section: str = "") -> T:
    """Build the dataclass ``cls`` from ``mapping``; unknown keys raise ConfigError."""
    mapping = dict(mapping or {})
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(mapping) - set(fields))
    where = f" in config section '{section}'" if section else ""
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(repr(k) for k in unknown)}{where}; "
            f"valid keys are: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints.get(k)) for k, v in mapping.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{exc}{where}") from exc


def _coerce(value: Any, hint: Any) -> Any:
    """YAML gives lists and strings; turn them into the tuples and Paths the dataclass declares."""
    if value is None or hint is None:
        return value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            if arg is type(None):
                continue
            return _coerce(value, arg)
        return value
    if hint is Path or (isinstance(hint, type) and issubclass(hint, Path)):
        return Path(value)
    if origin is tuple and isinstance(value, (list, tuple)):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0]) for v in value)
        return tuple(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def check(condition: bool, message: str) -> None:
    """Raise ConfigError(message) unless ``condition``; for use in ``__post_init__``."""
    if not condition:
        raise ConfigError(message)
