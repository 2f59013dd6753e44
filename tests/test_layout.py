"""The package tree is the architecture: imports point down, never up, never in a circle."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = pytest.mark.fast  # the edit loop's tier (tests/conftest.py)

PACKAGE = REPO / "tlcli"
ROOT = "(root)"  # errors, console, files, rundir, bases: every package may use them


def _import_rules() -> dict[str, set[str]]:
    """What each package may import from tlcli (besides itself), read from the "May import:"
    sentence of its `__init__` docstring (the root helpers': tlcli/__init__.py's): the
    `tlcli.<name>` it names, and "the root helpers". The docstrings are the one place the
    rules are written."""
    rules = {}
    for init in sorted([PACKAGE / "__init__.py", *PACKAGE.glob("*/__init__.py")]):
        package = ROOT if init.parent == PACKAGE else init.parent.name
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        found = re.search(r"May import:(.*?)\.(?:\s|$)", doc, re.DOTALL)
        assert found, f"{init.relative_to(REPO)}: no 'May import:' sentence in its docstring"
        names = re.findall(r"`(tlcli\.[\w.]+)`", found.group(1))
        unknown = [n for n in names if not _is_module(n)]
        assert not unknown, f"{init.relative_to(REPO)}: 'May import:' names no such {unknown}"
        rules[package] = {_package(name) for name in names}
        if "the root helpers" in found.group(1):
            rules[package].add(ROOT)
    return rules


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package(module: str) -> str:
    parts = module.split(".")
    if module == "tlcli.__main__":
        return "cli"  # `python -m tlcli` is the command line
    if len(parts) == 1:
        return ROOT  # tlcli itself
    return parts[1] if (PACKAGE / parts[1]).is_dir() else ROOT


def _is_module(name: str) -> bool:
    path = REPO / name.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports() -> dict[str, set[str]]:
    """Every tlcli module and the tlcli modules it imports, at any depth of the file. Imports
    for type checkers only (under `if TYPE_CHECKING:`) count too: a circle they close is a
    circle in the design, hidden from the interpreter only."""
    found: dict[str, set[str]] = defaultdict(set)
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name.startswith("tlcli") and _is_module(name):
                    found[module].add(name)
        found.setdefault(module, set())
    return found


ALLOWED = _import_rules()


def test_every_package_imports_only_the_packages_below_it():
    wrong = []
    for module, imported in _imports().items():
        package = _package(module)
        assert package in ALLOWED, f"{module}: package {package} has no import rule here"
        for name in imported:
            target = _package(name)
            if target != package and target not in ALLOWED[package]:
                wrong.append(f"{module} imports {name} ({package} -> {target})")
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_in_a_circle():
    graph = {m: {i for i in imported if i != m} for m, imported in _imports().items()}
    # A package's __init__ may re-export its modules; a module importing its own package's
    # __init__ is the only way that makes a loop, and that is the loop this test looks for.
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for child in sorted(graph.get(module, ())):
            if state.get(child) == 1:
                cycle = [*path[path.index(child) :], child]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if child not in state:
                visit(child)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_every_package_says_what_it_holds_and_may_import():
    for folder in sorted(p for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()):
        doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text()))
        assert doc, f"{folder.name}/__init__.py has no docstring"
        assert folder.name in ALLOWED, f"{folder.name}/__init__.py does not say what it may import"
        for module in folder.glob("*.py"):
            if module.name != "__init__.py":
                assert module.name in doc, f"{folder.name}/__init__.py does not list {module.name}"
