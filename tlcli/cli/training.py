"""pretrain, finetune, unfreeze, run and evaluate: parse, load the config, call `tlcli.api`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer

from tlcli.cli.app import (
    CONFIG,
    OVERWRITE,
    QUIET,
    RESUME,
    SET,
    app,
    handle_errors,
    load,
    make_console,
    training_mode,
)
from tlcli.rundir import TARGET_STAGES

# Typer checks (and completes) the values of a Literal option.
TargetStage = Literal[TARGET_STAGES]


def _add_training_command(name: str, summary: str, example: str) -> None:
    """pretrain, finetune, unfreeze and run take the same options and call their `tlcli.api`
    function."""

    def command(
        config: Path = CONFIG,
        overrides: list[str] = SET,
        resume: bool = RESUME,
        overwrite: bool = OVERWRITE,
        quiet: bool = QUIET,
    ) -> None:
        # imported when the command runs: --help and completion load none of it
        from tlcli import api

        mode = training_mode(resume, overwrite)
        getattr(api, name)(load(config, overrides), mode, make_console(quiet))

    command.__name__ = name  # the interrupt message names the command that continues it
    app.command(name=name, help=summary, epilog=f"Example: {example}")(handle_errors(command))


_add_training_command(
    "pretrain",
    "Train the base network on the source task (the `pretrain` section) and save it for reuse.",
    "tlcli pretrain configs/quickstart.yaml --set pretrain.epochs=5",
)
_add_training_command(
    "finetune",
    "Freeze the base, put a new dense head on it, train the head on the target data.",
    "tlcli finetune configs/vgg16_imagenet.yaml --set finetune.epochs=3",
)
_add_training_command(
    "unfreeze",
    "Unfreeze the top of the finetuned base (BatchNorm stays frozen); train on at a low rate.",
    "tlcli unfreeze configs/vgg16_imagenet.yaml --set unfreeze.layers=4",
)


@app.command(epilog="Example: tlcli evaluate configs/quickstart.yaml --stage finetune --calibrate")
@handle_errors
def evaluate(
    config: Path = CONFIG,
    stage: TargetStage | None = typer.Option(
        None, "--stage", help="finetune or unfreeze (default: the latest trained)."
    ),
    calibrate: bool | None = typer.Option(
        None,
        "--calibrate/--uncalibrate",
        help="Fit temperature scaling on val and keep it in model.keras (predict and exports "
        "then return calibrated probabilities); --uncalibrate puts the trained output back.",
        show_default=False,
    ),
    overrides: list[str] = SET,
    quiet: bool = QUIET,
) -> None:
    """Metrics per class, confusion matrix, calibration; errors.csv and a gallery of mistakes,
    MODEL_CARD.md, and the run's report.html."""
    # imported when the command runs: --help and completion load none of it
    from tlcli import api

    api.evaluate(load(config, overrides), stage, make_console(quiet), calibrate=calibrate)


_add_training_command(
    "run",
    "Every stage the config defines, in order, then evaluate; finished stages skip on --resume.",
    "tlcli run configs/quickstart.yaml --resume",
)
