"""Imports sit at the top of their modules. Outside `tlcli/cli/`, the few inside a function keep
TensorFlow (or another heavy optional dependency) off a path that needs none, say which path in a
comment, and are listed here: a new one fails until it is added, with its reason."""

from __future__ import annotations

import ast
import subprocess
import sys

from conftest import REPO

PACKAGE = REPO / "tlcli"

# module -> the names it imports inside a function (a module imported whole by its own name)
ALLOWED_IN_FUNCTIONS = {
    "tlcli.bases": {"keras"},
    "tlcli.experiments.study": {
        "optuna", "IntegrityError", "ProgrammingError", "psycopg", "InterfaceError",
        "OperationalError",
    },
    "tlcli.experiments.sweep": {"shared_frozen_bases", "run_trial"},
    "tlcli.train.calibration": {
        "keras", "keep_output_weights", "scale_logits", "has_tta", "rewrapped",
        "restore_output_weights", "tta_temperature", "inputs_only", "make_dataset",
    },
    "tlcli.insight.doctor": {"cleanlab", "scipy", "sklearn"},
    "tlcli.insight.duplicates": {"fft"},
    "tlcli.insight.features": {
        "NetworkCut", "cached_features", "cut_at_head", "freeze_base", "build_classifier",
        "build_base_with_weights",
    },
    "tlcli.insight.label_issues": {
        "find_label_issues", "LogisticRegression", "StratifiedKFold", "cross_val_predict",
        "make_pipeline", "StandardScaler",
    },
    "tlcli.runtime.distribute": {"tensorflow", "keras_patches"},
    "tlcli.runtime.keras_patches": {"keras", "tree", "trainer"},
    "tlcli.runtime.precision": {"keras"},
    "tlcli.runtime.startup": {"tensorflow", "keras"},
    "tlcli.serve.export": {"ConverterError", "keras"},
    "tlcli.serve.predictor": {"Interpreter", "keras"},
    "tlcli.train": {"evaluation", "stages"},
    "tlcli.train.evaluation": {
        "keras", "cut_at_head", "cut_in_base", "cached_top", "exact_cached_features",
        "inputs_only", "make_dataset", "has_tta",
    },
    "tlcli.train.plots": {"MaxNLocator", "matplotlib", "matplotlib.pyplot"},
    "tlcli.train.prepare": {"keras", "tensorflow"},
}  # fmt: skip


def _module_name(path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _in_function_imports():
    """(module, imported name, function, line, whether a comment says why) for every import
    inside a function of tlcli outside tlcli/cli/."""
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).parts[0] == "cli":
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        tree = ast.parse("\n".join(lines))
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            imports = sorted(
                (
                    node
                    for node in ast.walk(function)
                    if isinstance(node, ast.Import | ast.ImportFrom)
                ),
                key=lambda node: node.lineno,
            )
            for node in imports:
                # a comment on the import's line or the line above, or on the function's first
                # import (one comment covers a block)
                first = imports[0].lineno
                said = any(
                    "#" in lines[n - 1] for n in {node.lineno, node.lineno - 1, first, first - 1}
                )
                for alias in node.names:
                    yield _module_name(path), alias.name, function.name, node.lineno, said


def test_imports_inside_functions_are_the_listed_guards():
    found = list(_in_function_imports())
    new = [
        f"{module}:{line} {function}() imports {name}"
        for module, name, function, line, _ in found
        if name not in ALLOWED_IN_FUNCTIONS.get(module, set())
    ]
    assert not new, (
        "imports inside functions not listed here (move them to the top):\n" + "\n".join(new)
    )
    unexplained = [f"{m}:{line} {f}() imports {n}" for m, n, f, line, said in found if not said]
    assert not unexplained, "no comment says which path these keep TensorFlow off:\n" + "\n".join(
        unexplained
    )


def test_the_light_modules_load_no_tensorflow():
    probe = (
        "import sys\n"
        "import tlcli.train, tlcli.train.metrics, tlcli.train.plots\n"
        "import tlcli.train.head_search_conditions\n"
        "import tlcli.train.prepare, tlcli.train.evaluation, tlcli.cache.store, tlcli.cache.rows\n"
        "import tlcli.cache.decoded_images\n"
        "loaded = {'tensorflow', 'keras'} & set(sys.modules)\n"
        "print(sorted(loaded) or 'ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout.strip() == "ok", done.stdout + done.stderr[-2000:]
