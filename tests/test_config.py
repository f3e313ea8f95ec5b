"""Config sections -> typed dataclasses; presets validate; bad values are named.

That the schema and the dataclasses list the same keys, ranges and choices is
tests/test_config_bounds.py.
"""

from pathlib import Path

import jsonschema
import pytest
import yaml

from cxrgen.config import from_mapping
from cxrgen.data.split import SplitConfig
from cxrgen.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def load(name):
    return yaml.safe_load((ROOT / name).read_text())


def merged(*configs):
    """Recursive merge, as Snakemake applies --configfile overlays."""
    out: dict = {}
    for cfg in configs:
        _merge(out, cfg)
    return out


def _merge(into, new):
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


SCHEMA = load("schemas/config.schema.yaml")


@pytest.mark.parametrize("preset", [None, "smoke", "rsna", "covid_qu_ex"])
def test_default_config_and_presets_validate_and_build(preset):
    from cxrgen.data.preprocess import PreprocessConfig

    cfg = load("config.yaml")
    if preset:
        cfg = merged(cfg, load(f"presets/{preset}.yaml"))
    jsonschema.validate(cfg, SCHEMA)
    for name, ds in cfg["datasets"].items():
        from_mapping(PreprocessConfig, ds.get("preprocess"), f"datasets.{name}.preprocess")
        from_mapping(SplitConfig, ds.get("split"), f"datasets.{name}.split")
        phantom_cls = phantom_config_class(ds["layout"])
        from_mapping(phantom_cls, ds.get("phantoms"), f"datasets.{name}.phantoms")
        if "diffusion" in ds:
            from cxrgen.classifier.config import ClassifierTrainConfig
            from cxrgen.counterfactual.config import CounterfactualConfig
            from cxrgen.counterfactual.invert import InvertConfig
            from cxrgen.diffusion.config import DiffusionTrainConfig

            from_mapping(DiffusionTrainConfig, ds["diffusion"], f"datasets.{name}.diffusion")
            from_mapping(ClassifierTrainConfig, ds.get("classifier"), f"datasets.{name}.classifier")
            from_mapping(InvertConfig, ds.get("invert"), f"datasets.{name}.invert")
            from_mapping(
                CounterfactualConfig, ds.get("counterfactual"), f"datasets.{name}.counterfactual"
            )


def phantom_config_class(layout):
    from cxrgen.phantoms import CovidPhantomConfig, PhantomConfig

    return PhantomConfig if layout in ("rsna", "ralo") else CovidPhantomConfig


def test_unknown_key_and_bad_value_are_named():
    with pytest.raises(ConfigError, match=r"'seeed'.*datasets\.rsna\.split"):
        from_mapping(SplitConfig, {"seeed": 1}, "datasets.rsna.split")
    cfg = merged(load("config.yaml"), {"datasets": {"rsna": {"split": {"seed": -1}}}})
    with pytest.raises(jsonschema.ValidationError) as err:
        jsonschema.validate(cfg, SCHEMA)
    assert "seed" in str(err.value.path) or "seed" in str(list(err.value.absolute_path))
    cfg = merged(load("config.yaml"), {"datasets": {"rsna": {"preprocess": {"sise": 32}}}})
    with pytest.raises(jsonschema.ValidationError, match="sise"):
        jsonschema.validate(cfg, SCHEMA)
    cfg = merged(load("config.yaml"), {"datasets": {"rsna": {"diffusion": {"max_step": 3}}}})
    with pytest.raises(jsonschema.ValidationError, match="max_step"):
        jsonschema.validate(cfg, SCHEMA)
    cfg = merged(load("config.yaml"), {"datasets": {"rsna": {"diffusion": {"lr": 0}}}})
    # the bound itself must fail, at the key (the unevaluated-properties error that comes
    # with it names every key of the section and would match any bad value)
    errors = jsonschema.Draft202012Validator(SCHEMA).iter_errors(cfg)
    assert (("lr",), "exclusiveMinimum") in {(tuple(e.path)[-1:], e.validator) for e in errors}


def test_yaml_lists_become_tuples():
    cfg = from_mapping(SplitConfig, {"fractions": [0.5, 0.5], "names": ["a", "b"]})
    assert cfg.fractions == (0.5, 0.5) and cfg.names == ("a", "b")
    assert hash(cfg)  # frozen and hashable
