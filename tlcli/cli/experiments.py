"""sweep, compare and lr-find: parse, load the config, call the experiment."""

from __future__ import annotations

from pathlib import Path

import typer

from tlcli.cli.app import (
    CONFIG,
    OVERWRITE,
    QUIET,
    RESUME,
    SET,
    app,
    handle_errors,
    make_console,
    training_mode,
)


@app.command(
    epilog="Example: tlcli sweep configs/hymenoptera_mobilenet_v2.yaml --trials 20 "
    "--param finetune.optimizer.learning_rate=loguniform(1e-4,1e-2)"
)
@handle_errors
def sweep(
    config: Path = CONFIG,
    params: list[str] = typer.Option(
        [],
        "--param",
        "-p",
        metavar="KEY=SPEC",
        help="Search a key: loguniform(a,b), uniform(a,b), int(a,b[,step]), choice(x,y) or [x, y].",
    ),
    trials: int | None = typer.Option(
        None, "--trials", "-n", min=1, help="Trials in the study (sweep.trials)."
    ),
    storage: str | None = typer.Option(
        None,
        "--storage",
        help="Optuna RDB URL or journal file shared by several processes (default: the sweep "
        "folder's study.journal).",
    ),
    overrides: list[str] = SET,
    resume: bool = typer.Option(
        False, "--resume", help="Continue the sweep (or join it from another process)."
    ),
    overwrite: bool = OVERWRITE,
    quiet: bool = QUIET,
) -> None:
    """Search the config's `sweep` space with Optuna; every trial is a normal run folder."""
    from tlcli.config import load_config
    from tlcli.experiments.sweep import sweep as run_sweep

    extra = [f"sweep.trials={trials}"] if trials is not None else []
    cfg = load_config(config, [*overrides, *extra], params)
    run_sweep(cfg, training_mode(resume, overwrite), make_console(quiet), storage)


__all__ = ["OVERWRITE", "QUIET", "RESUME", "SET", "sweep"]
