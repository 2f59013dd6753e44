"""config and preflight: look at a config and its data without training anything."""

from __future__ import annotations

from pathlib import Path

import typer

from tlcli.cli.app import CONFIG, SET, app, handle_errors, load, make_console


@app.command(name="config", epilog="Example: tlcli config configs/quickstart.yaml --set seed=1")
@handle_errors
def show_config(config: Path = CONFIG, overrides: list[str] = SET) -> None:
    """Validate the config and print it resolved: every key, with defaults filled in."""
    typer.echo(load(config, overrides).to_yaml(), nl=False)


@app.command(epilog="Example: tlcli preflight configs/quickstart.yaml")
@handle_errors
def preflight(
    config: Path = CONFIG,
    overrides: list[str] = SET,
    strict: bool = typer.Option(False, "--strict", help="Exit 1 when any problem is found."),
) -> None:
    """Check the dataset without training: class counts, imbalance, bad files, duplicates."""
    # imported when the command runs: --help and completion load none of it
    from tlcli.data.preflight import run_preflight

    problems = run_preflight(load(config, overrides), make_console(False))
    if strict and problems:
        raise typer.Exit(1)
