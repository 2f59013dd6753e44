"""The benchmark suite's plumbing, without running a benchmark: the entry point lists every
suite, a result file records where it was measured, and the report renders the newest result
of each label into the docs page."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = pytest.mark.fast  # the edit loop's tier (tests/conftest.py)


@pytest.fixture
def benchmarks(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO))  # the package lives at the repository root
    import benchmarks.harness
    import benchmarks.report

    return benchmarks


def test_the_entry_point_lists_every_suite():
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    for suite in ("transfer", "quality", "scale", "pipeline", "doctor-faults", "report"):
        assert suite in done.stdout
    assert "tensorflow" not in done.stderr.lower()  # --help imports no suite


def test_every_suite_has_a_synthetic_mode_and_a_table(benchmarks):
    import importlib

    from benchmarks.__main__ import SUITES, suite_parser

    for name, (module_name, _) in SUITES.items():
        module = importlib.import_module(f"benchmarks.{module_name}")
        args = suite_parser(name, module).parse_args(["--synthetic"])
        assert args.synthetic and isinstance(module.label(args), str)
        assert callable(module.run) and callable(module.render)


def test_a_result_records_its_machine_and_the_report_renders_the_newest(benchmarks, tmp_path):
    from benchmarks.harness import environment, write_result
    from benchmarks.report import render_page

    def record(rate: float) -> dict:
        return {
            "suite": "pipeline",
            "label": "synthetic",
            "synthetic": True,
            "environment": environment(),
            "command": "python -m benchmarks pipeline --synthetic",
            "settings": {},
            "results": {"decode": 900.0, "none": rate, "flip": 1700.0, "flip + zoom 0.1": 600.0},
        }

    first = write_result("pipeline", record(11111.0), tmp_path)
    second = write_result("pipeline", record(22222.0), tmp_path)
    assert first != second and first.parent == tmp_path / "pipeline"
    saved = json.loads(second.read_text())["environment"]
    for key in ("commit", "tlcli", "tensorflow", "keras", "python", "cpu", "cores", "date"):
        assert saved[key] not in (None, "")
    page = "<!-- benchmarks:pipeline:begin (generated) -->\nold\n<!-- benchmarks:pipeline:end -->"
    rendered = render_page(page, tmp_path)
    assert "22,222" in rendered and "11,111" not in rendered and "old" not in rendered
    assert f"commit {saved['commit']}" in rendered and saved["cpu"] in rendered


def test_a_suite_whose_programs_are_missing_skips_with_one_line(benchmarks, monkeypatch, capsys):
    import benchmarks.sweep_workers as suite
    from benchmarks.__main__ import main

    monkeypatch.setattr(suite, "postgres_bin", lambda: None)
    monkeypatch.setitem(sys.modules, "psycopg", sys.modules.get("psycopg") or object())
    before = sorted(REPO.glob("benchmarks/results/sweep-workers/*.json"))
    assert main(["sweep-workers", "--synthetic"]) == 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "[bench] skipped: PostgreSQL is not installed (pg_ctl not found; Debian: apt install "
        "postgresql)"
    ]
    assert sorted(REPO.glob("benchmarks/results/sweep-workers/*.json")) == before
