"""doctor and report: look into a dataset and a run."""

from __future__ import annotations

from pathlib import Path

import typer

from tlcli.cli.app import CONFIG, QUIET, SET, app, handle_errors, load, make_console
from tlcli.errors import ConfigError
from tlcli.rundir import RunDir


@app.command(epilog="Example: tlcli doctor configs/quickstart.yaml --strict")
@handle_errors
def doctor(
    config: Path = CONFIG,
    overrides: list[str] = SET,
    strict: bool = typer.Option(
        False, "--strict", help="Exit 1 when a near-duplicate crosses splits (leakage)."
    ),
    quiet: bool = QUIET,
) -> None:
    """Near-duplicates, images filed under two labels, likely label errors and outliers,
    from the frozen base's features: doctor.csv, a contact sheet per kind of finding, a summary
    (needs tlcli\\[doctor])."""
    # imported when the command runs: --help and completion load none of it
    from tlcli.insight.doctor import run_doctor

    findings = run_doctor(load(config, overrides), make_console(quiet))
    if strict and findings.cross_split_duplicates:
        raise typer.Exit(1)


@app.command(epilog="Example: tlcli report runs/quickstart")
@handle_errors
def report(
    run_dir: Path = typer.Argument(
        ..., metavar="RUN_DIR", help="The run directory.", show_default=False
    ),
    quiet: bool = QUIET,
) -> None:
    """Draw report.html, the error galleries and the model cards again from a run folder."""
    # imported when the command runs: --help and completion load none of it
    from tlcli.insight.reports import write_reports

    if not run_dir.is_dir() or not RunDir(run_dir).started_stages():
        raise ConfigError(f"{run_dir}: not a run directory (no trained stage in it)")
    write_reports(run_dir, console=make_console(quiet))
