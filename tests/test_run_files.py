"""The run folder owns its file names: `tlcli/rundir.py` spells each one, and every other module
asks it (a name written out elsewhere is how a run's layout gets two owners)."""

from __future__ import annotations

import ast
import re

from conftest import REPO

PACKAGE = REPO / "tlcli"
# A string that is a file name (or a glob of one, or ends one after a slash).
FILE_NAME = re.compile(
    r"^[\w*.-]*\w\.(json|jsonl|csv|yaml|yml|keras|npz|npy|txt|html|md|png|h5|tflite|onnx)$"
)
# File names that are not a run's, and why.
NOT_RUN_FILES = {
    "float32.onnx": "a scratch file in a temporary folder, while quantizing an ONNX export",
    "epoch-*.weights.h5": "inside backup/: the per-epoch backup's own files (train/fitting.py)",
    ".weights.h5": "the suffix of a backup's file name in backup/ (train/fitting.py)",
    "results.json": "a sweep's folder, not a run's (tlcli.experiments)",
    "results.csv": "a sweep's folder, not a run's (tlcli.experiments)",
    "sweep.png": "a sweep's folder, not a run's (tlcli.experiments)",
    "best.yaml": "a sweep's folder, not a run's (tlcli.experiments)",
    "sweep.yaml": "a sweep's folder, not a run's (tlcli.experiments)",
}


def _docstrings(tree: ast.AST) -> set[int]:
    """The docstrings' nodes: their examples may name files as a user would."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def file_names_spelled(source: str) -> list[tuple[int, str]]:
    """(line, name) of every string literal, or literal part of an f-string, that is a file
    name, outside docstrings.

    >>> file_names_spelled('x = folder / "stage.json"\\ny = f"{d}/doctor.csv"\\nz = ".json"')
    [(1, 'stage.json'), (2, 'doctor.csv')]
    """
    tree = ast.parse(source)
    skipped = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in skipped
        ):
            name = node.value.rsplit("/", 1)[-1]  # a message (with spaces) is not a path
            if FILE_NAME.match(name) and not re.search(r"\s", node.value):
                found.append((node.lineno, name))
    return sorted(found)


def test_no_module_but_rundir_spells_a_run_file_name():
    spelled = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "rundir.py":
            continue
        for line, name in file_names_spelled(path.read_text(encoding="utf-8")):
            if name not in NOT_RUN_FILES:
                spelled.append(f"{path.relative_to(REPO)}:{line}: {name!r}")
    assert not spelled, (
        "a run's file names live in tlcli/rundir.py (use its constant or RunDir):\n"
        + "\n".join(spelled)
    )


def test_the_allowed_names_are_not_the_run_folders():
    from tlcli import rundir

    run_names = {v for v in vars(rundir).values() if isinstance(v, str)}
    run_names |= set(rundir.DOCTOR_SHEETS.values()) | set(rundir.MODEL_FILES.values())
    assert not run_names & set(NOT_RUN_FILES)
