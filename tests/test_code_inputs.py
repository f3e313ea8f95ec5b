"""Code inputs that cannot go stale: each rule lists every library module its script runs.

The rules derive their code inputs from the import statements of their workflow scripts
(rules/common.smk, ``script_code``; :mod:`cxrgen.code_inputs`). Checked here against what
really happens: the modules in ``sys.modules`` after a script's imports have run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from workflow_helpers import ROOT, overlay, snakemake

from cxrgen.code_inputs import imported_files

SRC = ROOT / "src"

# Runs each script's import statements (wherever they stand in the script: at the top, in
# the `with` block of the stage) in one interpreter and prints, per script, the files of the
# cxrgen modules then loaded. cxrgen is dropped from sys.modules between scripts, so every
# script starts from none of them; third-party packages (torch, ...) stay loaded.
PROBE = r"""
import ast, json, sys

def library(name):
    return name == "cxrgen" or name.startswith("cxrgen.")

loaded = {}
for script in sys.argv[1:]:
    for name in [n for n in sys.modules if library(n)]:
        del sys.modules[name]
    with open(script, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=script)
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    exec(compile(ast.Module(body=imports, type_ignores=[]), script, "exec"), {})
    loaded[script] = sorted(
        m.__file__ for n, m in sys.modules.items() if library(n) and getattr(m, "__file__", None)
    )
print(json.dumps(loaded))
"""


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_walker_follows_imports_of_a_synthetic_package(tmp_path):
    src = tmp_path / "src"
    write(
        src,
        {
            "pkg/__init__.py": '"""A package."""\n',
            # `from pkg.sub import b`: b is a submodule; `helper` a name defined in sub
            "pkg/a.py": "import json\nfrom pkg.sub import b, helper\n",
            # a relative import of a sibling submodule, run by anything under pkg.sub
            "pkg/sub/__init__.py": "from . import c\n\ndef helper():\n    pass\n",
            # a cycle: a -> sub.b -> a
            "pkg/sub/b.py": "from pkg import a\n",
            # a relative from-import of a module two levels up, and of a sibling's name
            "pkg/sub/c.py": "from ..util import VALUE\nfrom .d import OTHER\n",
            "pkg/sub/d.py": "OTHER = 2\n",
            "pkg/util.py": "VALUE = 1\n\ndef late():\n    import pkg.ns.lazy\n",
            # a namespace package (no __init__.py), reached by an import inside a function
            "pkg/ns/lazy.py": "import numpy\n",
            "pkg/unused.py": "from pkg import a\n",
            "pkg/sub/unused.py": "",
        },
    )
    script = tmp_path / "scripts" / "stage.py"
    write(
        tmp_path / "scripts",
        {"stage.py": "import os\n\nwith open(os.devnull):\n    from pkg.a import helper\n"},
    )
    expected = [
        "pkg/__init__.py",
        "pkg/a.py",
        "pkg/ns/lazy.py",
        "pkg/sub/__init__.py",
        "pkg/sub/b.py",
        "pkg/sub/c.py",
        "pkg/sub/d.py",
        "pkg/util.py",
    ]
    assert imported_files([script], src) == [str(src / p) for p in expected]
    # a module of the package as the start: its own file is listed only when imported
    assert imported_files([src / "pkg" / "sub" / "d.py"], src) == []
    assert imported_files([src / "pkg" / "unused.py"], src) == [str(src / p) for p in expected]


def test_walker_sees_an_edit_of_a_module(tmp_path):
    src = tmp_path / "src"
    write(src, {"pkg/__init__.py": "", "pkg/a.py": "", "pkg/b.py": ""})
    script = tmp_path / "stage.py"
    script.write_text("import pkg.a\n")
    assert imported_files([script], src) == [str(src / "pkg/__init__.py"), str(src / "pkg/a.py")]
    (src / "pkg" / "a.py").write_text("from pkg import b  # now imports b\n")
    assert str(src / "pkg/b.py") in imported_files([script], src)


def test_walker_names_an_import_of_a_missing_module(tmp_path):
    src = tmp_path / "src"
    write(src, {"pkg/__init__.py": "", "pkg/a.py": "from pkg.moved import thing\n"})
    script = tmp_path / "stage.py"
    script.write_text("from pkg import a\n")
    with pytest.raises(ModuleNotFoundError, match="pkg.moved"):
        imported_files([script], src)


def rule_scripts() -> dict[str, Path]:
    """Rule name -> the workflow script it runs, read from the Snakefile and rules/*.smk."""
    scripts = {}
    for path in [ROOT / "Snakefile", *sorted((ROOT / "rules").glob("*.smk"))]:
        for block in re.split(r"(?m)^(?=rule )", path.read_text()):
            rule = re.match(r"rule (\w+):", block)
            script = re.search(r"\n    script:\n\s+\"([^\"]+)\"", block)
            if rule and script:
                scripts[rule.group(1)] = (path.parent / script.group(1)).resolve()
    return scripts


def planned_code_inputs(workdir: Path) -> dict[str, list[set[Path]]]:
    """Rule -> the library .py inputs of each of its jobs in a dry run of the smoke workflow
    (with one set of new images to apply the rsna models to: the preset has none)."""
    workdir.mkdir(parents=True, exist_ok=True)
    new = {"apply": {"new": {"model": "rsna", "input": str(workdir)}}}
    proc = snakemake(workdir, "--dry-run", configs=(overlay(workdir / "apply.yaml", new),))
    jobs: dict[str, list[set[Path]]] = {}
    for rule, body in re.findall(r"(?m)^rule (\w+):\n((?:    .*\n)*)", proc.stdout + proc.stderr):
        inputs = re.search(r"(?m)^    input: (.*)$", body)
        paths = {Path(p).resolve() for p in inputs.group(1).split(", ")} if inputs else set()
        jobs.setdefault(rule, []).append(
            {p for p in paths if p.suffix == ".py" and p.is_relative_to(SRC)}
        )
    return jobs


def loaded_modules(scripts: list[Path]) -> dict[Path, set[Path]]:
    """Script -> files of the cxrgen modules loaded once its import statements have run."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *map(str, scripts)],
        capture_output=True, text=True, env=env, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {
        Path(script): {Path(f).resolve() for f in files}
        for script, files in json.loads(proc.stdout.splitlines()[-1]).items()
    }


def test_every_rule_lists_every_module_its_script_imports(tmp_path):
    scripts = rule_scripts()
    assert len(scripts) >= 14, scripts  # every stage rule is found
    planned = planned_code_inputs(tmp_path)
    assert set(scripts) <= set(planned), f"rules the smoke workflow plans no job of: {scripts}"
    loaded = loaded_modules(sorted(set(scripts.values())))
    problems = {}
    for rule, script in sorted(scripts.items()):
        derived = {Path(p).resolve() for p in imported_files([script], SRC)}
        # the loaded set is the floor (what any run of the stage imports); the derived one
        # adds imports that stand inside functions
        assert loaded[script] <= derived, (rule, loaded[script] - derived)
        for listed in planned[rule]:
            missing = sorted(str(p.relative_to(SRC)) for p in (loaded[script] | derived) - listed)
            if missing:
                problems[rule] = f"rule {rule} ({script.name}) lists no {', '.join(missing)}"
    assert not problems, "\n".join(problems.values())
