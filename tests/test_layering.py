"""Imports go only downward through the package's layers (docs/architecture.md):

    probe.errors, probe.device, probe.plugins, probe.options  <  probe.data  <  probe.models  <  probe.store
        <  probe.train  <  probe.analyses  <  probe.analyses.engine  <  probe.report  <  probe.cli, probe.demo

Every import counts: at module level, inside functions, and under ``if TYPE_CHECKING:``. ``probe/__init__.py`` is
the public facade, loaded lazily, and may name anything; ``from probe import NAME`` elsewhere counts as an import of
the module that defines ``NAME``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "probe"

#: module prefix -> layer; a module may import its own layer and those below it
LAYERS: dict[str, int] = {
    "probe.errors": 0, "probe.device": 0, "probe.plugins": 0, "probe.options": 0, "probe.lazy": 0, "probe.progress": 0,
    "probe.data": 1,
    "probe.models": 2,
    "probe.store": 3,
    "probe.train": 4,
    "probe.analyses": 5,
    "probe.analyses.engine": 6,
    "probe.report": 7,
    "probe.cli": 8, "probe.demo": 8,
}

#: Upward imports known today, as (importing module, imported module). Each is a debt: remove its entry when the
#: import goes; the test fails on any other upward import, and on an entry that no longer occurs.
KNOWN_VIOLATIONS: frozenset[tuple[str, str]] = frozenset()


def layer_of(module: str) -> int | None:
    """The layer of ``module`` (by its longest listed prefix), or None for a module no layer lists."""
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return LAYERS[prefix]
    return None


def _facade_target(name: str) -> str:
    """The module ``from probe import name`` really imports: a submodule, a lazy public name's module, or the
    facade itself (``__version__``)."""
    if (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file():
        return f"probe.{name}"
    import probe

    return probe._LAZY[name][0] if name in probe._LAZY else "probe"


def imported_modules(source: str, module: str, *, is_package: bool = False) -> list[tuple[str, int]]:
    """``(imported probe module, line)`` for every import of ``source`` (module ``module``), wherever it stands."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            if base == "probe":
                found += [(_facade_target(alias.name), node.lineno) for alias in node.names]
            else:
                found.append((base, node.lineno))
    return [(name, line) for name, line in found if name == "probe" or name.startswith("probe.")]


def upward_imports(source: str, module: str, *, is_package: bool = False) -> list[tuple[str, str, int]]:
    """``(module, imported module, line)`` for every import of a higher layer, or of a module no layer lists."""
    own = layer_of(module)
    out = []
    for name, line in imported_modules(source, module, is_package=is_package):
        if name == "probe":
            continue  # the facade's own attributes (__version__)
        layer = layer_of(name)
        if own is None or layer is None or layer > own:
            out.append((module, name, line))
    return out


def package_modules() -> list[tuple[str, Path, bool]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        if name != "probe":  # the facade
            out.append((name, path, is_package))
    return out


def test_every_module_imports_only_downward():
    found = set()
    for name, path, is_package in package_modules():
        for module, imported, line in upward_imports(path.read_text(), name, is_package=is_package):
            found.add((module, imported, line))
    unexpected = sorted(f"{m}:{line} imports {i}" for m, i, line in found if (m, i) not in KNOWN_VIOLATIONS)
    assert not unexpected, "upward imports (see docs/architecture.md):\n" + "\n".join(unexpected)
    gone = KNOWN_VIOLATIONS - {(m, i) for m, i, _ in found}
    assert not gone, f"no longer imported upward; remove from KNOWN_VIOLATIONS: {sorted(gone)}"


def test_every_module_has_a_layer():
    assert [name for name, _, _ in package_modules() if layer_of(name) is None] == []


SYNTHETIC = '''
from typing import TYPE_CHECKING
from probe.errors import ProbeInputError
from . import base
from probe import __version__
if TYPE_CHECKING:
    from probe.store.reader import Run
def f():
    import probe.report.html
    from ..cli import main
    from probe import open_run
'''


def test_the_checker_finds_upward_imports_wherever_they_stand():
    found = upward_imports(SYNTHETIC, "probe.data.fake")
    assert found == [("probe.data.fake", "probe.store.reader", 7), ("probe.data.fake", "probe.report.html", 9),
                     ("probe.data.fake", "probe.cli", 10), ("probe.data.fake", "probe.store.reader", 11)]
    assert upward_imports(SYNTHETIC, "probe.cli.fake") == []
    assert upward_imports("import probe.data\n", "probe.newpackage") == [("probe.newpackage", "probe.data", 1)]


def test_the_checker_fails_the_package_test_on_an_added_upward_import(monkeypatch):
    original = Path.read_text

    def with_an_upward_import(path: Path, *args, **kwargs) -> str:
        text = original(path, *args, **kwargs)
        return text + "\nimport probe.cli\n" if path == PACKAGE / "data" / "base.py" else text

    monkeypatch.setattr(Path, "read_text", with_an_upward_import)
    with pytest.raises(AssertionError, match=r"probe\.data\.base:\d+ imports probe\.cli"):
        test_every_module_imports_only_downward()


def test_importing_the_analyses_loads_neither_the_report_nor_the_cli():
    code = ("import sys, importlib, pkgutil, probe.analyses\n"
            "probe.analyses.load_analyses()\n"
            "print(sorted(m for m in sys.modules if m.startswith(('probe.report', 'probe.cli'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.strip() == "[]"


def import_cycles() -> list[list[str]]:
    """Groups of modules that import each other (directly or through others), each sorted; imports of a package's
    ``__init__`` count as imports of the package."""
    graph: dict[str, set[str]] = {}
    for name, path, is_package in package_modules():
        graph[name] = {i for i, _ in imported_modules(path.read_text(), name, is_package=is_package) if i != name}
    for targets in graph.values():
        for target in list(targets):
            if target not in graph:  # an attribute imported from a module (from probe.x import name)
                targets.discard(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(cycles)


def test_no_two_modules_import_each_other():
    cycles = [c for c in import_cycles() if not any(m in c and i in c for m, i in KNOWN_VIOLATIONS)]
    assert cycles == []
