"""predict and export: use a trained run without its config."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer

from tlcli.cli.app import QUIET, app, at_least_one, handle_errors, make_console
from tlcli.rundir import STAGES
from tlcli.serve.formats import EXPORT_FORMATS, PREDICTION_FORMATS, QUANTIZE_MODES

# Typer checks (and completes) the values of a Literal option.
Stage = Literal[STAGES]
ExportFormat = Literal[EXPORT_FORMATS]
QuantizeMode = Literal[QUANTIZE_MODES]
PredictionFormat = Literal[PREDICTION_FORMATS]

STAGE = typer.Option(
    None, "--stage", help="pretrain, finetune or unfreeze (default: the latest trained)."
)


@app.command(
    epilog="Example: tlcli predict runs/quickstart photos/ 'more/*.jpg' --format csv "
    "--output predictions.csv"
)
@handle_errors
def predict(
    target: Path = typer.Argument(
        ...,
        metavar="RUN_DIR_OR_MODEL",
        help="A run directory, a stage or export folder, a model.keras, .tflite or .onnx file.",
        show_default=False,
    ),
    images: list[str] = typer.Argument(
        ...,
        metavar="IMAGES",
        help="Image files, folders (searched recursively) or quoted glob patterns.",
        show_default=False,
    ),
    stage: Stage | None = STAGE,
    top_k: int = typer.Option(
        3, "--top-k", metavar="N", callback=at_least_one, help="Labels to show per image."
    ),
    output_format: PredictionFormat | None = typer.Option(
        None, "--format", help="table, csv or json (default: from --output's suffix, else table)."
    ),
    output: Path = typer.Option(
        None,
        "--output",
        "-o",
        metavar="FILE",
        help="Write csv/json to this file (atomically), not stdout.",
    ),
    batch_size: int = typer.Option(
        32, "--batch-size", metavar="N", callback=at_least_one, help="Images per batch."
    ),
    strict: bool = typer.Option(
        False, "--strict", help="Exit 1 when any image cannot be read (default: exit 0)."
    ),
    quiet: bool = QUIET,
) -> None:
    """Top-k labels for each image; unreadable files are listed with their error.

    Exit 0 when at least one image was classified (unreadable ones are listed), 2 when none
    could be, 1 with --strict when any could not be.
    """
    # imported when the command runs: --help and completion load none of it
    from tlcli.serve.predict import predict_images

    summary = predict_images(
        target,
        images,
        stage=stage,
        top_k=top_k,
        output_format=output_format,
        output=output,
        batch_size=batch_size,
        console=make_console(quiet),
    )
    if strict and summary.errors:
        raise typer.Exit(1)


@app.command(
    name="export",
    epilog="Example: tlcli export runs/quickstart --format tflite --quantize int8",
)
@handle_errors
def export_model(
    run_dir: Path = typer.Argument(
        ...,
        metavar="RUN_DIR",
        help="The run directory, or one of its stage folders (runs/x/unfreeze).",
        show_default=False,
    ),
    export_format: ExportFormat = typer.Option(
        ..., "--format", help="keras, savedmodel, tflite or onnx.", show_default=False
    ),
    stage: Stage | None = STAGE,
    quantize: QuantizeMode = typer.Option(
        "none", "--quantize", help="none; tflite: dynamic, float16, int8; onnx: dynamic."
    ),
    output: Path = typer.Option(
        None,
        "--output",
        "-o",
        metavar="DIR",
        help="Export folder (default: RUN_DIR/export/STAGE-FORMAT[-Q]).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing export."),
    force: bool = typer.Option(
        False, "--force", help="Keep the export even if it fails its check (export.json says so)."
    ),
    quiet: bool = QUIET,
) -> None:
    """Save a trained stage for serving with its labels; check it against the run's model."""
    # imported when the command runs: --help and completion load none of it
    from tlcli.serve.export import export_stage

    export_stage(
        run_dir,
        export_format,
        stage=stage,
        quantize=quantize,
        output=output,
        overwrite=overwrite,
        force=force,
        console=make_console(quiet),
    )
