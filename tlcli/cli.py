"""The `tlcli` command line: parse options, load the config, call a stage, map errors to exits.

Exit codes: 0 success; 2 a usage, config or dataset error (one line, no traceback); 1 a failure
while running. Nothing here imports TensorFlow: `tlcli --help` and config errors stay instant.
"""

from __future__ import annotations

import functools
import gc
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from tlcli import __version__
from tlcli.errors import ConfigError, TlcliError

app = typer.Typer(
    help="Transfer learning for image classifiers, driven by a YAML config.\n\n"
    "Example: tlcli run configs/quickstart.yaml",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

CONFIG = typer.Argument(..., help="YAML config file.", show_default=False)
SET = typer.Option(
    [], "--set", "-s", metavar="KEY=VALUE", help="Override a config key, e.g. finetune.epochs=3."
)
RESUME = typer.Option(False, "--resume", help="Continue an interrupted stage; skip finished ones.")
OVERWRITE = typer.Option(
    False, "--overwrite", help="Delete the stage (and the stages built on it), train again."
)
QUIET = typer.Option(False, "--quiet", "-q", help="No progress output: banners and results only.")


def handle_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn tlcli's own errors into one line on stderr and their exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except TlcliError as exc:
            from tlcli.console import Console

            Console().error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            print("interrupted: rerun with --resume to continue", file=sys.stderr)
            raise typer.Exit(130) from None

    return wrapper


def _mode(resume: bool, overwrite: bool) -> str:
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other")
    return "resume" if resume else "overwrite" if overwrite else "new"


def _load(config: Path, overrides: list[str]):
    from tlcli.config import load_config

    return load_config(config, overrides)


def _console(quiet: bool):
    from tlcli.console import Console

    return Console(quiet=quiet)


def _add_training_command(name: str, function: str, summary: str, example: str) -> None:
    """pretrain, finetune, unfreeze and run take the same options and differ in what they call."""

    @app.command(name=name, help=summary, epilog=f"Example: {example}")
    @handle_errors
    def command(
        config: Path = CONFIG,
        overrides: list[str] = SET,
        resume: bool = RESUME,
        overwrite: bool = OVERWRITE,
        quiet: bool = QUIET,
    ) -> None:
        from tlcli import stages

        mode = _mode(resume, overwrite)
        getattr(stages, function)(_load(config, overrides), mode, _console(quiet))


_add_training_command(
    "pretrain",
    "pretrain",
    "Train the base network on the source task (the `pretrain` section) and save it for reuse.",
    "tlcli pretrain configs/quickstart.yaml --set pretrain.epochs=5",
)
_add_training_command(
    "finetune",
    "finetune",
    "Freeze the base, put a new dense head on it, train the head on the target data.",
    "tlcli finetune configs/vgg16_imagenet.yaml --set finetune.epochs=3",
)
_add_training_command(
    "unfreeze",
    "unfreeze",
    "Unfreeze the top of the finetuned base (BatchNorm stays frozen); train on at a low rate.",
    "tlcli unfreeze configs/vgg16_imagenet.yaml --set unfreeze.layers=4",
)


@app.command(epilog="Example: tlcli evaluate configs/quickstart.yaml --stage finetune")
@handle_errors
def evaluate(
    config: Path = CONFIG,
    stage: str = typer.Option(
        None, "--stage", help="finetune or unfreeze (default: the latest trained)."
    ),
    overrides: list[str] = SET,
    quiet: bool = QUIET,
) -> None:
    """Accuracy, precision, recall, F1 (per class and averaged) and the confusion matrix."""
    from tlcli import stages

    if stage not in (None, "finetune", "unfreeze"):
        raise ConfigError(f"--stage {stage}: expected finetune or unfreeze")
    stages.evaluate(_load(config, overrides), stage, _console(quiet))


_add_training_command(
    "run",
    "run_all",
    "Every stage the config defines, in order, then evaluate; finished stages skip on --resume.",
    "tlcli run configs/quickstart.yaml --resume",
)


@app.command(name="config", epilog="Example: tlcli config configs/quickstart.yaml --set seed=1")
@handle_errors
def show_config(config: Path = CONFIG, overrides: list[str] = SET) -> None:
    """Validate the config and print it resolved: every key, with defaults filled in."""
    typer.echo(_load(config, overrides).to_yaml(), nl=False)


@app.command(epilog="Example: tlcli preflight configs/quickstart.yaml")
@handle_errors
def preflight(
    config: Path = CONFIG,
    overrides: list[str] = SET,
    strict: bool = typer.Option(False, "--strict", help="Exit 1 when any problem is found."),
) -> None:
    """Check the dataset without training: class counts, imbalance, bad files, duplicates."""
    from tlcli.preflight import run_preflight

    problems = run_preflight(_load(config, overrides), _console(False))
    if strict and problems:
        raise typer.Exit(1)


@app.command(
    epilog="Example: tlcli predict runs/quickstart photos/ 'more/*.jpg' --format csv "
    "--output predictions.csv"
)
@handle_errors
def predict(
    target: Path = typer.Argument(
        ...,
        metavar="RUN_DIR_OR_MODEL",
        help="A run directory, a stage or export folder, a model.keras or model.tflite.",
        show_default=False,
    ),
    images: list[str] = typer.Argument(
        ...,
        metavar="IMAGES",
        help="Image files, folders (searched recursively) or quoted glob patterns.",
        show_default=False,
    ),
    stage: str = typer.Option(
        None, "--stage", help="pretrain, finetune or unfreeze (default: the latest trained)."
    ),
    top_k: int = typer.Option(3, "--top-k", min=1, help="Labels to show per image."),
    output_format: str = typer.Option(
        None, "--format", help="table, csv or json (default: from --output's suffix, else table)."
    ),
    output: Path = typer.Option(
        None, "--output", "-o", help="Write csv/json to this file (atomically), not stdout."
    ),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Images per batch."),
    quiet: bool = QUIET,
) -> None:
    """Top-k labels for each image; unreadable files are listed with their error."""
    from tlcli.predict import predict_images

    predict_images(
        target,
        images,
        stage=stage,
        top_k=top_k,
        output_format=output_format,
        output=output,
        batch_size=batch_size,
        console=_console(quiet),
    )


@app.command(
    name="export",
    epilog="Example: tlcli export runs/quickstart --format tflite --quantize int8",
)
@handle_errors
def export_model(
    run_dir: Path = typer.Argument(
        ..., metavar="RUN_DIR", help="The run directory.", show_default=False
    ),
    export_format: str = typer.Option(
        ..., "--format", help="keras, savedmodel or tflite.", show_default=False
    ),
    stage: str = typer.Option(
        None, "--stage", help="pretrain, finetune or unfreeze (default: the latest trained)."
    ),
    quantize: str = typer.Option(
        "none", "--quantize", help="TFLite only: none, dynamic, float16 or int8."
    ),
    output: Path = typer.Option(
        None, "--output", "-o", help="Export folder (default: RUN_DIR/export/STAGE-FORMAT[-Q])."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing export."),
    quiet: bool = QUIET,
) -> None:
    """Save a trained stage for serving with its labels; check it against the run's model."""
    from tlcli.export import export_stage

    export_stage(
        run_dir,
        export_format,
        stage=stage,
        quantize=quantize,
        output=output,
        overwrite=overwrite,
        console=_console(quiet),
    )


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tlcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Transfer learning for image classifiers, driven by a YAML config."""


def main() -> None:
    try:
        app()
    finally:
        # Python's last garbage collection walks TensorFlow's whole object graph at exit
        # (~2 s per process, measured by benchmarks/). Nothing tlcli writes depends on it:
        # every file is closed by its own `with` block or Keras callback by now.
        gc.freeze()
