"""sweep, compare and lr-find: parse, load the config, call the experiment."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer

from tlcli.cli.app import (
    CONFIG,
    OVERWRITE,
    QUIET,
    SET,
    app,
    at_least_one,
    handle_errors,
    make_console,
    training_mode,
)
from tlcli.cli.training import TargetStage
from tlcli.errors import ConfigError
from tlcli.runtime.startup import import_tensorflow


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
        help="Search a key: loguniform(a,b), uniform(a,b), int(a,b[,step]), choice(x,y) "
        "or \\[x, y].",
    ),
    trials: int | None = typer.Option(
        None,
        "--trials",
        "-n",
        metavar="N",
        callback=lambda value: value if value is None else at_least_one(value),
        help="Trials in the study (sweep.trials).",
    ),
    storage: str | None = typer.Option(
        None,
        "--storage",
        metavar="URL",
        help="Optuna RDB URL or journal file shared by several processes (default: the sweep "
        "folder's study.journal).",
    ),
    workers: int = typer.Option(
        1,
        "--workers",
        "-j",
        metavar="N",
        callback=at_least_one,
        help="Processes on this machine working on the sweep.",
    ),
    overrides: list[str] = SET,
    resume: bool = typer.Option(
        False, "--resume", help="Continue the sweep (or join it from another process)."
    ),
    overwrite: bool = OVERWRITE,
    quiet: bool = QUIET,
    helper: bool = typer.Option(False, "--helper", hidden=True),
) -> None:
    """Search the config's `sweep` space with Optuna; every trial is a normal run folder."""
    # imported when the command runs: --help and completion load none of it
    from tlcli.config import load_config
    from tlcli.experiments.sweep import sweep as run_sweep

    extra = [f"sweep.trials={trials}"] if trials is not None else []
    cfg = load_config(config, [*overrides, *extra], params)
    mode = training_mode(resume, overwrite)
    console = make_console(quiet)
    run_sweep(cfg, mode, console, storage, workers=workers, write_summary=not helper)


@app.command(
    epilog="Example: tlcli compare runs/a runs/b 'runs/my-sweep' --sort finetune.accuracy --desc"
)
@handle_errors
def compare(
    runs: list[str] = typer.Argument(
        ...,
        metavar="RUN_OR_SWEEP",
        help="Run or sweep folders, or glob patterns ('runs/*').",
        show_default=False,
    ),
    sort: str | None = typer.Option(None, "--sort", metavar="COLUMN", help="Sort by this column."),
    desc: bool = typer.Option(False, "--desc", help="Sort in descending order."),
    output_format: Literal["table", "csv", "json", "markdown"] = typer.Option(
        "table", "--format", "-f", help="table, csv, json or markdown."
    ),
    per_class: bool = typer.Option(False, "--per-class", help="F1 of each class too."),
    chart: Path | None = typer.Option(
        None, "--chart", metavar="FILE", help="Write a PNG bar chart of --metric."
    ),
    metric: str = typer.Option(
        "finetune.accuracy", "--metric", metavar="COLUMN", help="The column --chart shows."
    ),
    quiet: bool = QUIET,
) -> None:
    """Runs and sweeps side by side: the config keys that differ, each stage's metrics, time."""
    # imported when the command runs: --help and completion load none of it
    from tlcli.experiments.compare import compare as compare_runs
    from tlcli.experiments.compare import plot_metric, render

    console = make_console(quiet)
    comparison = compare_runs(runs, sort=sort, descending=desc, per_class=per_class)
    for reason in comparison.skipped:
        console.warn(f"{reason}: skipped")
    if not comparison.rows:
        raise ConfigError("no runs to compare")
    text = render(comparison, output_format, console)
    if text is not None:
        typer.echo(text, nl=False)
    if chart is not None:
        plot_metric(comparison, metric, chart)
        console.status(f"chart: {chart}")


@app.command(
    "lr-find",
    epilog="Example: tlcli lr-find configs/hymenoptera_mobilenet_v2.yaml --stage finetune",
)
@handle_errors
def lr_find(
    config: Path = CONFIG,
    stage: TargetStage = typer.Option(
        "finetune", "--stage", help="The stage whose learning rate to find."
    ),
    start: float = typer.Option(1e-7, "--start", metavar="RATE", help="Lowest rate tried."),
    end: float = typer.Option(1.0, "--end", metavar="RATE", help="Highest rate tried."),
    steps: int = typer.Option(
        100, "--steps", metavar="N", callback=at_least_one, help="Training steps of the test."
    ),
    rule: Literal["descent", "minimum"] = typer.Option(
        "descent",
        "--rule",
        help="descent: halfway down the loss's descent (when it does not fall: where it starts "
        "to climb); minimum: a tenth of the lowest loss's rate.",
    ),
    overrides: list[str] = SET,
    quiet: bool = QUIET,
) -> None:
    """The learning-rate range test (Smith, 2017): the loss curve and a suggested rate."""
    # imported when the command runs: --help and completion load none of it
    from tlcli.config import load_config

    cfg = load_config(config, overrides)
    import_tensorflow()  # quietly, before Keras
    from tlcli.experiments.lr_find import lr_find as range_test  # it imports Keras

    range_test(cfg, stage, make_console(quiet), start=start, end=end, steps=steps, rule=rule)
