"""The package tree is the architecture: imports point down, never up, never in a circle."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "tlcli"
ROOT = "(root)"  # errors, console, files, rundir, bases: every package may use them

# What each package may import from tlcli (besides itself); README "Development" shows this.
ALLOWED = {
    ROOT: set(),
    "config": {ROOT},
    "data": {"config", ROOT},
    "model": {"config", ROOT},
    "runtime": {"config", ROOT},
    "cache": {"data", "model", "config", ROOT},
    "train": {"cache", "data", "model", "runtime", "config", ROOT},
    "serve": {"data", "runtime", "config", ROOT},
    "experiments": {"train", "serve", "cache", "data", "model", "runtime", "config", ROOT},
    "insight": {"train", "serve", "cache", "data", "model", "runtime", "config", ROOT},
    "cli": {
        "experiments",
        "insight",
        "train",
        "serve",
        "cache",
        "data",
        "model",
        "runtime",
        "config",
        ROOT,
    },
}


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
                if name.startswith("tlcli") and (
                    (REPO / name.replace(".", "/")).with_suffix(".py").is_file()
                    or (REPO / name.replace(".", "/") / "__init__.py").is_file()
                ):
                    found[module].add(name)
        found.setdefault(module, set())
    return found


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
        if folder.name != "cli":
            assert "May import" in doc, f"{folder.name}/__init__.py does not say what it may import"
        for module in folder.glob("*.py"):
            if module.name != "__init__.py":
                assert module.name in doc, f"{folder.name}/__init__.py does not list {module.name}"
