"""The schema and the config dataclasses state the same keys, ranges and choices.

Every stage section of ``schemas/config.schema.yaml`` maps to one frozen dataclass (the
workflow scripts build it with ``from_mapping``); this walks each of them and checks, key by
key:

- the schema lists exactly the dataclass fields (no key silently ignored on either side);
- each numeric bound (minimum, maximum, exclusiveMinimum, exclusiveMaximum, also on list
  items): a value just inside is accepted by the schema and the dataclass, a value just
  outside is rejected by both (ConfigError from the dataclass);
- each enum / const: every listed value is accepted by both; values outside it (other
  choices named anywhere in the schema or in cxrgen's module-level constants, or numbers
  next to a numeric enum) are rejected by both;
- a side the schema leaves open (no maximum, no minimum) is open in the dataclass too.

A value that only makes sense together with other keys (warmup_steps <= max_steps, a width
that norm_num_groups divides, fractions that sum to 1) gets its companions from ``CONTEXT``.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import math
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

import cxrgen
from cxrgen.config import from_mapping
from cxrgen.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "schemas/config.schema.yaml").read_text())
DEFS = SCHEMA["$defs"]

# schema definition -> the dataclass its section builds (the from_mapping call of its
# workflow script and cli command), by class name: found in whichever cxrgen module defines it
SECTIONS = {
    "preprocess": "PreprocessConfig",
    "split": "SplitConfig",
    "rsna_phantoms": "PhantomConfig",
    "covidqu_phantoms": "CovidPhantomConfig",
    "diffusion": "DiffusionTrainConfig",
    "classifier": "ClassifierTrainConfig",
    "stargan": "StarGANTrainConfig",
    "dcgan": "DCGANTrainConfig",
    "generate": "GenerateConfig",
    "gan_metrics": "GanMetricsConfig",
    "invert": "InvertConfig",
    "counterfactual": "CounterfactualConfig",
    "evaluate": "EvaluateConfig",
    "figures": "FiguresConfig",
    "lungseg": "LungSegTrainConfig",
}
# keys of a data set that are no dataclass section, and why
NOT_SECTIONS = {
    "layout": "picks the reader and the phantom kind (a string)",
    "source": "a folder or 'phantoms' (a string)",
    "phantoms": "rsna_phantoms (layouts rsna, ralo) or covidqu_phantoms (both in SECTIONS)",
    "guidance_scales": "lists of scales, one job each (read by the rules, not a dataclass)",
    "fid_cxr_classifier": "the name of a data set (a string)",
    "apply_model": "the name of the data set whose models score this one (rules/common.smk)",
    "lung_masks_from": "the name of the data set whose lung segmenter predicts the masks",
}

# known schema vs dataclass drift (none left): an entry is an xfail(strict); a fix flags it
KNOWN_DRIFT: dict[str, str] = {}
BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
BIG = 10**6  # a value far out on a side the schema leaves open (divisible by 8, 16 and 64)
# companions a probed value needs to be valid at all, by (section, key)
TRAINED = ("diffusion", "classifier", "stargan", "dcgan", "lungseg")
UNET = ("diffusion", "classifier")
CONTEXT: dict[tuple[str, str], dict[str, Any]] = {
    **{(s, "warmup_steps"): {"max_steps": BIG} for s in TRAINED},
    **{(s, "max_steps"): {"warmup_steps": 0} for s in TRAINED},
    ("diffusion", "num_train_timesteps"): {"sample_steps": 1},
    ("diffusion", "sample_steps"): {"num_train_timesteps": 2 * BIG},
    **{(s, "block_out_channels"): {"norm_num_groups": 1, "attention_head_dim": 1} for s in UNET},
    **{(s, "norm_num_groups"): {"block_out_channels": [BIG]} for s in UNET},
    **{(s, "attention_head_dim"): {"block_out_channels": [BIG]} for s in UNET},
    **{(s, "base_dim"): {"max_conv_dim": BIG} for s in ("stargan", "dcgan")},
    **{(s, "max_conv_dim"): {"base_dim": 1} for s in ("stargan", "dcgan")},
    ("lungseg", "block_out_channels"): {"norm_num_groups": 1},
    ("lungseg", "norm_num_groups"): {"block_out_channels": [BIG]},
    ("preprocess", "hash_patient_id"): {"patient_id_salt": "salt"},
    ("preprocess", "classes_from_severity"): {"severity_csv": "ralo.csv"},
    ("rsna_phantoms", "min_size"): {"max_size": 4096},
    ("rsna_phantoms", "max_size"): {"min_size": 32},
    ("rsna_phantoms", "frac_normal"): {"frac_opacity": 0},
    ("rsna_phantoms", "frac_opacity"): {"frac_normal": 0},
    ("rsna_phantoms", "opacity_patterns"): {"opacity_pattern_weights": [1]},
    ("rsna_phantoms", "opacity_pattern_weights"): {"opacity_patterns": ["patchy", "lobar"]},
    ("rsna_phantoms", "transfer_syntaxes"): {"transfer_syntax_weights": [1]},
    ("rsna_phantoms", "transfer_syntax_weights"): {"transfer_syntaxes": ["rle", "explicit"]},
}
# a list whose probed item x cannot stand alone: the list and its companions
ITEMS_WITH = {
    ("split", "fractions"): lambda x: (
        {"fractions": [x, 1.0 - x], "names": ["a", "b"]}
        if x < 1
        else {"fractions": [x], "names": ["a"]}
    ),
    ("rsna_phantoms", "opacity_pattern_weights"): lambda x: {"opacity_pattern_weights": [x, 1.0]},
    ("rsna_phantoms", "transfer_syntax_weights"): lambda x: {"transfer_syntax_weights": [x, 1.0]},
}


@functools.cache
def config_classes() -> dict[str, type]:
    """Every dataclass defined in a cxrgen module, by name."""
    found: dict[str, list[type]] = {}
    package = Path(cxrgen.__file__).parent
    for path in sorted(package.rglob("*.py")):  # namespace packages too (no __init__.py)
        parts = path.relative_to(package.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        module = importlib.import_module(name)
        for value in vars(module).values():
            if dataclasses.is_dataclass(value) and value.__module__ == name:
                found.setdefault(value.__name__, []).append(value)
    return {name: classes[0] for name, classes in found.items() if len(classes) == 1}


def dataclass_of(section: str) -> type:
    name = SECTIONS[section]
    assert name in config_classes(), f"no single cxrgen dataclass named {name}"
    return config_classes()[name]


def key_schemas(definition: dict) -> dict[str, list[dict]]:
    """Each key of a definition with every subschema that constrains it (allOf followed)."""
    out: dict[str, list[dict]] = {}
    for key, sub in definition.get("properties", {}).items():
        out.setdefault(key, []).append(sub)
    for part in definition.get("allOf", []):
        for key, subs in key_schemas(DEFS[part["$ref"].rsplit("/", 1)[-1]]).items():
            out.setdefault(key, []).extend(subs)
    return out


def validator(section: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({"$ref": f"#/$defs/{section}", "$defs": DEFS})


def schema_accepts(section: str, mapping: dict) -> bool:
    return validator(section).is_valid(mapping)


def dataclass_accepts(section: str, mapping: dict) -> bool:
    try:
        from_mapping(dataclass_of(section), mapping, section)
    except ConfigError:
        return False
    return True


def is_integer(subs: list[dict]) -> bool:
    return any(s.get("type") == "integer" for s in subs)


def just_inside(bound: str, limit: float, integer: bool) -> float:
    if integer:
        return {"minimum": limit, "maximum": limit}.get(
            bound, limit + 1 if bound == "exclusiveMinimum" else limit - 1
        )
    toward = math.inf if bound in ("minimum", "exclusiveMinimum") else -math.inf
    return float(limit) if bound in ("minimum", "maximum") else math.nextafter(limit, toward)


def just_outside(bound: str, limit: float, integer: bool) -> float:
    if integer:
        return {"exclusiveMinimum": limit, "exclusiveMaximum": limit}.get(
            bound, limit - 1 if bound == "minimum" else limit + 1
        )
    away = -math.inf if bound in ("minimum", "exclusiveMinimum") else math.inf
    return float(limit) if bound.startswith("exclusive") else math.nextafter(limit, away)


def vocabulary() -> set[str]:
    """Choice names: every string of a schema enum and of cxrgen's module-level collections."""
    config_classes()  # imports every cxrgen module
    words: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("enum", "const"):
                    words.update(w for w in (v if k == "enum" else [v]) if isinstance(w, str))
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(SCHEMA)
    for name, module in list(sys.modules.items()):
        if not name.startswith("cxrgen.") or module is None:
            continue
        for value in vars(module).values():
            if isinstance(value, (tuple, list, set, frozenset, dict)):
                words.update(w for w in value if isinstance(w, str))
    return words


def param(section: str, key: str, what: str, values: list, accepted: bool, items: bool = False):
    """One check: each value of ``key`` (an item of its list if ``items``) with its companions."""
    mappings = []
    for x in values:
        alone = {key: [x]} if items else {key: x}
        probe = ITEMS_WITH[section, key](x) if items and (section, key) in ITEMS_WITH else alone
        mappings.append({**CONTEXT.get((section, key), {}), **probe})
    name = f"{section}.{key}:{'item' if items else 'value'} {what}"
    drift = KNOWN_DRIFT.get(name)
    marks = [pytest.mark.xfail(strict=True, reason=drift)] if drift else []
    return pytest.param(section, key, mappings, accepted, id=name, marks=marks)


def key_probes(section: str, key: str, parts: list[dict], items: bool) -> list:
    """The checks of one key (or of its list items) from every subschema that constrains it."""
    out = []
    integer = is_integer(parts)
    numeric = integer or any(s.get("type") == "number" for s in parts)
    bounds = [(b, s[b]) for s in parts for b in BOUNDS if b in s]
    for bound, limit in bounds:
        inside, outside = just_inside(bound, limit, integer), just_outside(bound, limit, integer)
        out.append(param(section, key, f"{bound} {limit} inside", [inside], True, items))
        out.append(param(section, key, f"{bound} {limit} outside", [outside], False, items))
    choices = [s["enum"] for s in parts if "enum" in s] + [
        [s["const"]] for s in parts if "const" in s
    ]
    if numeric and not choices:
        if not any(b in ("maximum", "exclusiveMaximum") for b, _ in bounds):
            out.append(
                param(section, key, "no maximum", [BIG if integer else float(BIG)], True, items)
            )
        if not any(b in ("minimum", "exclusiveMinimum") for b, _ in bounds):
            out.append(
                param(section, key, "no minimum", [-BIG if integer else -float(BIG)], True, items)
            )
    if not choices:
        if any(s.get("type") == "boolean" for s in parts):
            out.append(param(section, key, "every choice", [True, False], True, items))
        return out
    allowed = [c for c in choices[0] if all(c in other for other in choices[1:])]
    out.append(param(section, key, "every choice", allowed, True, items))
    if all(isinstance(c, bool) for c in allowed):
        others = sorted({True, False} - set(allowed))
    elif all(isinstance(c, str) for c in allowed):
        others = sorted(VOCABULARY - set(allowed))
    else:
        numbers = sorted(allowed)
        between = [(a + b) // 2 for a, b in zip(numbers, numbers[1:], strict=False)]
        others = [numbers[0] - 1, numbers[-1] + 1, *between]
    out.append(
        param(section, key, "other choices", [v for v in others if v not in allowed], False, items)
    )
    return out


def probes() -> list:
    """The checks of every key of every section: bounds, choices and open sides."""
    out = []
    for section in SECTIONS:
        for key, subs in key_schemas(DEFS[section]).items():
            out += key_probes(section, key, subs, items=False)
            item_parts = [s["items"] for s in subs if isinstance(s.get("items"), dict)]
            if item_parts:
                out += key_probes(section, key, item_parts, items=True)
    return out


VOCABULARY = vocabulary()


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_schema_lists_exactly_the_dataclass_fields(section):
    fields = {f.name for f in dataclasses.fields(dataclass_of(section)) if f.init}
    keys = set(key_schemas(DEFS[section]))
    assert keys - fields == set(), "schema keys the dataclass does not have"
    assert fields - keys == set(), "dataclass fields the schema does not list"


def test_every_dataset_section_is_walked():
    refs = {
        key: sub["$ref"].rsplit("/", 1)[-1]
        for key, sub in DEFS["dataset"]["properties"].items()
        if "$ref" in sub
    }
    assert set(DEFS["dataset"]["properties"]) == set(refs) | set(NOT_SECTIONS)
    assert {refs[k] for k in refs} == set(SECTIONS) - {"rsna_phantoms", "covidqu_phantoms"}
    phantoms = {
        part["then"]["properties"]["phantoms"]["$ref"].rsplit("/", 1)[-1]
        for part in DEFS["dataset"]["allOf"]
    }
    assert phantoms == {"rsna_phantoms", "covidqu_phantoms"}


def test_context_values_are_valid_on_their_own():
    """The companions are in range, so a probe's verdict is about the probed key only."""
    for (section, key), extra in CONTEXT.items():
        assert key in key_schemas(DEFS[section]), (section, key)
        assert schema_accepts(section, extra), (section, extra)


@pytest.mark.parametrize("section, key, mappings, accepted", probes())
def test_schema_and_dataclass_agree(section, key, mappings, accepted):
    verdict = {True: "accepts", False: "rejects"}
    wrong = [
        f"{section}.{key} = {m[key]!r}: schema {verdict[s]}, dataclass {verdict[d]}"
        for m in mappings
        for s, d in [(schema_accepts(section, m), dataclass_accepts(section, m))]
        if (s, d) != (accepted, accepted)
    ]
    assert not wrong, "\n".join(wrong)
