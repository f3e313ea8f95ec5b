"""A saved model: one safetensors file per network and config.json (the architecture).

The GANs save several networks (``generator.safetensors``, ...); the classifier and the lung
segmenter one, ``model.safetensors`` (:func:`save_model` / :func:`load_model`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import safetensors.torch
from torch import nn

from cxrgen import io
from cxrgen.errors import DataError

CONFIG = "config.json"
MODEL = "model"  # the one network of a one-network model


def save_networks(out_dir: str | Path, nets: Mapping[str, nn.Module], config: dict) -> None:
    """``{name}.safetensors`` per network and ``config.json``, each written atomically."""
    out_dir = Path(out_dir)
    for name, net in nets.items():
        state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        with io.atomic_path(out_dir / f"{name}.safetensors") as tmp:
            safetensors.torch.save_file(state, tmp)
    io.write_json(out_dir / CONFIG, config)


def read_model_config(model_dir: str | Path, kind: str) -> dict[str, Any]:
    """The config.json of a saved GAN of ``kind`` ('stargan' or 'dcgan'); DataError if absent."""
    path = Path(model_dir) / CONFIG
    if not path.exists():
        raise DataError(f"no {kind} model in {model_dir} (missing {CONFIG}): train it first")
    config = io.read_json(path)
    if config.get("kind") != kind:
        raise DataError(f"{model_dir} holds a {config.get('kind')!r} model, not a {kind!r} one")
    return config


def load_weights(model_dir: str | Path, name: str, net: nn.Module) -> nn.Module:
    """Load ``{name}.safetensors`` into ``net``; eval mode, parameters frozen."""
    path = Path(model_dir) / f"{name}.safetensors"
    if not path.exists():
        raise DataError(f"missing {path}: the model folder is incomplete, train it again")
    net.load_state_dict(safetensors.torch.load_file(path, device="cpu"))
    return net.eval().requires_grad_(False)


def save_model(model: nn.Module, out_dir: str | Path) -> None:
    """``model.safetensors`` + ``config.json`` (``model.config``) of a one-network model."""
    save_networks(out_dir, {MODEL: model}, model.config)


def load_model(
    cls: Callable[..., nn.Module], model_dir: str | Path, what: str, device
) -> nn.Module:
    """Rebuild ``cls(**config.json)`` with ``model.safetensors`` on ``device``; eval mode,
    parameters frozen (gradients with respect to the input still flow). ``what`` names the
    model in the error when the folder does not hold one."""
    model_dir = Path(model_dir)
    if not (model_dir / CONFIG).exists() or not (model_dir / f"{MODEL}.safetensors").exists():
        raise DataError(
            f"no {what} in {model_dir} ({CONFIG} + {MODEL}.safetensors): train it first"
        )
    return load_weights(model_dir, MODEL, cls(**io.read_json(model_dir / CONFIG))).to(device)
