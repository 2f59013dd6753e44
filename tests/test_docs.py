"""The documentation site: it builds with `mkdocs build --strict` (no broken link, anchor or
missing page), its reference pages are what the code renders now, its benchmark tables are what
the result files give, and the README stays a short front door that links into it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = pytest.mark.fast  # the edit loop's tier (tests/conftest.py)

README = (REPO / "README.md").read_text(encoding="utf-8")


def run(*command: str, cwd=REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's notice about its successor
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_site_builds_strictly(tmp_path):
    pytest.importorskip("material", reason="the docs extra is not installed")
    done = run(sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "reference" / "cli" / "index.html").is_file()
    assert (tmp_path / "benchmarks" / "index.html").is_file()


def test_generated_reference_pages_are_current():
    done = run(sys.executable, "scripts/gen_docs.py", "--check")
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_stale_reference_page_is_caught(tmp_path):
    """The check compares with what the code renders: a page edited by hand fails it."""
    copy = tmp_path / "repo"
    shutil.copytree(REPO / "docs", copy / "docs")
    shutil.copytree(REPO / "scripts", copy / "scripts")
    shutil.copytree(REPO / "tlcli", copy / "tlcli", ignore=shutil.ignore_patterns("__pycache__"))
    page = copy / "docs" / "reference" / "config.md"
    page.write_text(page.read_text().replace("`finetune.epochs` | int | `10`", "x"))
    done = run(sys.executable, "scripts/gen_docs.py", "--check", cwd=copy)
    assert done.returncode == 1 and "config.md is stale" in done.stdout


def test_every_command_and_config_key_is_in_the_references():
    from typer.main import get_command

    from tlcli.cli import app

    cli = (REPO / "docs" / "reference" / "cli.md").read_text()
    group = get_command(app)
    for name in group.list_commands(group.context_class(group)):
        assert f"## `tlcli {name}`" in cli
    config = (REPO / "docs" / "reference" / "config.md").read_text()
    for key in ("unfreeze.interpolate", "finetune.search", "run.distribution", "data.val_split"):
        assert f"`{key}`" in config


def test_benchmark_tables_are_what_the_results_give():
    done = run(sys.executable, "-m", "benchmarks", "report", "--check")
    assert done.returncode == 0, done.stdout + done.stderr


def test_readme_is_a_front_door_that_links_into_the_docs():
    lines = README.splitlines()
    assert len(lines) <= 200
    for page in re.findall(r"\]\((docs/[^)#]+)", README):
        assert (REPO / page).is_file(), page
    linked = set(re.findall(r"\]\(docs/([^)#]+)", README))
    assert {"getting-started.md", "own-data.md", "reference/config.md", "benchmarks.md"} <= linked


def test_docs_speak_about_the_product_not_its_history():
    pages = [p for p in (REPO / "docs").rglob("*.md")] + [REPO / "README.md"]
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"\bissue \d+|\btoday\b", text, re.I), page


def test_readme_headline_is_what_the_quality_results_say():
    """README quotes the final test accuracy of both recipes: the mean over the seeds of the
    newest quality result, as the benchmarks page renders it."""
    import json

    newest = sorted((REPO / "benchmarks" / "results" / "quality").glob("*.json"))[-1]
    datasets = json.loads(newest.read_text())["results"]["datasets"]
    for name, by_tool in datasets.items():
        for tool in ("plain", "tlcli"):
            runs = by_tool[tool]
            mean = sum(run["unfreeze"]["accuracy"] for run in runs) / len(runs)
            row = next(line for line in README.splitlines() if line.startswith(f"| {name}"))
            assert f"{mean:.3f}" in row, (name, tool, mean, row)


def test_every_python_name_the_docs_give_exists():
    """`tlcli.a.b.name` in a guide is something a user can import: renames show up here."""
    import importlib

    pages = [*(REPO / "docs").glob("*.md"), REPO / "README.md"]
    names = {n for page in pages for n in re.findall(r"`(tlcli(?:\.\w+)+)", page.read_text())}
    assert names
    for name in sorted(names):
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                found = importlib.import_module(".".join(parts[:cut]))
            except ModuleNotFoundError:
                continue
            for attribute in parts[cut:]:
                found = getattr(found, attribute, None)
                assert found is not None, f"{name} (in the docs) does not exist"
            break


def test_every_repository_path_the_docs_give_exists():
    pages = [*(REPO / "docs").rglob("*.md"), REPO / "README.md"]
    pattern = r"`((?:tlcli|configs|scripts|benchmarks|tests)/[\w./-]+)`"
    paths = {p for page in pages for p in re.findall(pattern, page.read_text())}
    assert paths
    missing = sorted(path for path in paths if not (REPO / path).exists())
    assert not missing, f"the docs name files that are not there: {missing}"
