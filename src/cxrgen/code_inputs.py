"""The library modules a script runs, read from its import statements.

A rule's code inputs are the files of every module its workflow script imports from the
library, followed import by import (``import a.b``, ``from a import b`` where ``b`` is a
submodule, relative imports) together with the ``__init__.py`` of every package on the way,
since importing ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py`` first. The files are
parsed, never imported: the Snakemake process that plans the jobs needs none of the library's
dependencies, and rules/common.smk loads this module by its path.

Every import statement counts, wherever it stands (inside functions, ``with`` blocks,
``if TYPE_CHECKING:``): a module the stage may run is an input; one listed needlessly costs
a rerun, one missing lets an edit go unnoticed. Only the standard library is used here.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterable
from functools import cache

__all__ = ["imported_files"]


def imported_files(scripts: Iterable[str | os.PathLike], src: str | os.PathLike) -> list[str]:
    """Sorted paths of the modules under ``src`` that ``scripts`` import, transitively.

    ``src`` is the folder that holds the library's top-level packages (the one on
    ``sys.path``); imports of anything not found there (the standard library, third-party
    packages) are not followed. The scripts themselves are not in the result.
    An import of a name under ``src`` that resolves to no file raises ModuleNotFoundError.
    """
    src = os.path.abspath(src)
    found: set[str] = set()
    todo = [(os.path.abspath(s), None) for s in scripts]
    while todo:
        path, module = todo.pop()
        for name in _imported_names(path, module, src):
            for part in _with_parents(name):
                file = _module_file(src, part)
                if file is not None and file not in found:
                    found.add(file)
                    todo.append((file, part))
    return sorted(found)


def _imported_names(path: str, module: str | None, src: str) -> list[str]:
    """Absolute names of the library modules the file at ``path`` imports.

    ``module`` is the file's dotted name (None for a script outside the library, whose
    relative imports, if any, cannot be resolved and are left out).
    """
    names = []
    for kind, base, level, members in _imports(path):
        if level:
            if module is None:
                continue
            base = _absolute(base, level, module, path.endswith("__init__.py"), path)
        if not _in_library(src, base):
            continue
        if _module_file(src, base) is None and not _is_namespace(src, base):
            raise ModuleNotFoundError(f"{path} imports {base}, which is not a module in {src}")
        names.append(base)
        if kind == "from":
            # `from a import b`: b is a submodule (imported too) or a name defined in a
            names += [f"{base}.{m}" for m in members if _module_file(src, f"{base}.{m}")]
    return names


def _imports(path: str) -> tuple[tuple[str, str, int, tuple[str, ...]], ...]:
    """(kind, module, level, imported member names) of every import statement of a file."""
    stat = os.stat(path)
    return _parsed_imports(path, stat.st_mtime_ns, stat.st_size)


@cache
def _parsed_imports(path: str, mtime_ns: int, size: int) -> tuple:
    """:func:`_imports` of one version of a file (cached by its time and size)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [("import", alias.name, 0, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            members = tuple(alias.name for alias in node.names if alias.name != "*")
            out.append(("from", node.module or "", node.level, members))
    return tuple(out)


def _absolute(name: str, level: int, module: str, is_package: bool, path: str) -> str:
    """The absolute name of a relative import (``level`` leading dots) made in ``module``."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    if level - 1 >= len(package):
        raise ImportError(f"{path}: a relative import goes above the top-level package")
    parts = package[: len(package) - (level - 1)]
    return ".".join(parts + ([name] if name else []))


def _with_parents(name: str) -> list[str]:
    """``a.b.c`` -> ``a``, ``a.b``, ``a.b.c``: every package whose __init__ the import runs."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _in_library(src: str, name: str) -> bool:
    top = name.split(".")[0]
    return bool(top) and (
        os.path.isdir(os.path.join(src, top)) or os.path.isfile(os.path.join(src, f"{top}.py"))
    )


def _module_file(src: str, name: str) -> str | None:
    """The file that defines module ``name`` under ``src`` (a package's __init__.py), if any."""
    base = os.path.join(src, *name.split("."))
    for candidate in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(candidate):
            return candidate
    return None


def _is_namespace(src: str, name: str) -> bool:
    """A folder without __init__.py: a namespace package, importable and holding no code."""
    return os.path.isdir(os.path.join(src, *name.split(".")))
