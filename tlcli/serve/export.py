"""Export a trained stage for serving, with its labels, checked against the run before it counts.

Each export is a folder, by default `<run>/export/<stage>-<format>[-<quantize>]/`::

    model.keras | saved_model/ | model.tflite | model.onnx    the artefact
    labels.txt      class names, one per line, in output order
    export.json     what was exported, its inputs, the check result

Every artefact takes raw RGB pixels (0..255) at the trained size, [N, H, W, 3], and carries its
own preprocessing:

- keras: float32 input (other numeric dtypes are cast), softmax probabilities out.
- savedmodel: `serving_default` (also `serve`) takes uint8; `serve_float` takes float32. Both
  return `probabilities` (float32 [N, classes]) and `labels` (string [N], the top-1 class).
- tflite: float32 input and output for every quantize mode; N defaults to 1 and can be resized.
  `dynamic` stores conv/dense weights as int8, `float16` as float16, `int8` quantizes weights
  and activations to int8 (calibrated on up to 100 training images) with a quantize op on the
  way in and a dequantize op on the way out, so callers feed the same floats.
- onnx: input `image` float32, output `probabilities` float32 [N, classes]; the class names are
  also in the model's metadata_props (`labels`, a JSON list). `dynamic` is ONNX Runtime's
  dynamic quantization (int8 weights). Written by `tlcli.serve.onnx_model`.

Before the folder is put in place the export is loaded back from disk and compared with the
stage's model.keras on the run's images (`tlcli.serve.parity`); beyond the tolerance of its
format and quantize mode it is a RunError and nothing is left behind, unless `force` keeps it
(export.json then says `"parity": {"passed": false, "forced": true, ...}`).
`tests/test_export.py` exports and checks every format.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tlcli import __version__
from tlcli.console import Console
from tlcli.errors import ConfigError, Remedy, RunError
from tlcli.files import atomic_dir, write_json
from tlcli.rundir import EXPORT_INFO, LABELS_FILE, STAGE_RECORD, STAGES, RunDir, check_stage_name
from tlcli.runtime.startup import import_tensorflow, quiet_stderr
from tlcli.serve.formats import (
    ARTEFACTS,
    EXPORT_FORMATS,
    FORMAT_QUANTIZE_MODES,
    QUANTIZE_MODES,
    formats_taking,
)
from tlcli.serve.onnx_model import (
    INPUT_NAME,
    LABELS_KEY,
    OUTPUT_NAME,
    import_onnx_packages,
    quantize_dynamic,
    write_onnx,
)
from tlcli.serve.parity import (
    CheckResult,
    Tolerance,
    calibration_images,
    check_images,
    compare,
    non_integer_layers,
    tolerance,
)
from tlcli.serve.predictor import Predictor, keras_predictor, load_keras_model, load_predictor

INPUTS = {
    "keras": "float32 [N, H, W, 3], RGB 0..255",
    "savedmodel": "serving_default: uint8 [N, H, W, 3] RGB; serve_float: float32 0..255",
    "tflite": "float32 [N, H, W, 3], RGB 0..255 (N resizable, 1 by default)",
    "onnx": f"'{INPUT_NAME}': float32 [N, H, W, 3], RGB 0..255; '{OUTPUT_NAME}': float32 "
    f"[N, classes]; class names in metadata_props['{LABELS_KEY}']",
}


# Said when a check fails where the cause is known.
FAILED_CHECK_HINTS = {
    ("onnx", "dynamic"): (
        ". ONNX Runtime's dynamic quantization gives each conv weight tensor one scale, which "
        "networks with depthwise convolutions (MobileNet, EfficientNet) lose accuracy to: "
        "export onnx unquantized, or tflite quantized"
    ),
}


@dataclass
class ExportResult:
    folder: Path
    artefact: Path
    size_bytes: int
    checks: dict[str, CheckResult]  # per SavedModel signature, else one keyed by the format

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks.values())


def default_export_dir(run: RunDir, stage: str, export_format: str, quantize: str) -> Path:
    """`<run>/export/<stage>-<format>`, with `-<quantize>` when it is not none."""
    suffix = "" if quantize == "none" else f"-{quantize}"
    return run.export_dir / f"{stage}-{export_format}{suffix}"


def export_stage(
    run_dir: Path,
    export_format: str,
    *,
    stage: str | None = None,
    quantize: str = "none",
    output: Path | None = None,
    overwrite: bool = False,
    force: bool = False,
    console: Console | None = None,
) -> ExportResult:
    """Export a finished stage of `run_dir` (default: the latest trained) and check it.

    `run_dir` may also be a stage folder of a run (`runs/x/unfreeze`): that stage is exported.
    `force`: keep an export that fails its check (recorded in export.json), instead of a RunError.
    """
    console = console or Console()
    run, stage = _check_request(run_dir, export_format, stage, quantize)
    folder = output or default_export_dir(run, stage, export_format, quantize)
    if folder.exists() and not overwrite:
        raise ConfigError(
            f"{folder} already exists",
            remedies=(Remedy("overwrite", "replace it"), Remedy("output", "export elsewhere")),
        )
    source = run.model_path(stage)
    model = load_keras_model(source)
    reference = keras_predictor(model, source)
    if reference.labels_file is None:
        raise RunError(f"{source.parent / LABELS_FILE} is missing: the export needs class names")
    sample = check_images(run.path, reference.image_size)
    expected = _predict_in_batches(reference, sample)
    details = f"{stage} of {run.path} as {export_format}" + (
        f" ({quantize})" if quantize != "none" else ""
    )
    console.banner("export", details)
    with atomic_dir(folder) as tmp:
        job = _Job(model, reference, run.path, tmp, export_format, quantize, console)
        WRITERS[export_format](job)
        shutil.copyfile(reference.labels_file, tmp / LABELS_FILE)
        checks = _check_export(job, sample, expected, details, force)
        size = _size(tmp / ARTEFACTS[export_format])
        write_json(tmp / EXPORT_INFO, _metadata(job, stage, reference, checks, force))
    run.record_export(folder, stage)  # so that overwriting the stage can name it
    artefact = folder / ARTEFACTS[export_format]
    result = ExportResult(folder, artefact, size, checks)
    worst = _worst(checks)
    if result.passed:
        console.result(
            f"exported {details} -> {artefact} ({size / 1e6:.1f} MB); "
            f"check passed: {worst.describe()}"
        )
    else:
        console.warn(
            f"exported {details} -> {artefact} ({size / 1e6:.1f} MB) although it failed its "
            f"check, as forced: {worst.describe()}"
        )
    return result


# ----------------------------------------------------------------------------------- writers


@dataclass
class _Job:
    """What a format writer needs: the stage's model and what was read from it."""

    model: Any  # the stage's keras.Model
    reference: Predictor  # the same model as a Predictor: its file, input size and labels
    run_path: Path
    folder: Path  # the (temporary) export folder to write into
    export_format: str
    quantize: str
    console: Console

    @property
    def tolerance(self) -> Tolerance:
        return tolerance(self.export_format, self.quantize)


def _write_keras(job: _Job) -> None:
    """The stage's model.keras as it is: it loads without tlcli (built-in layers only)."""
    # copyfile, not copy2: the copy gets the exporting user's permissions, not the source's
    shutil.copyfile(job.reference.path, job.folder / ARTEFACTS["keras"])


def _write_savedmodel(job: _Job) -> None:
    """A SavedModel whose signatures return the probabilities and the top-1 class name."""
    tf = import_tensorflow()
    model = job.model
    class_names = tf.constant(job.reference.labels)

    def outputs(probabilities):
        top = tf.argmax(probabilities, axis=-1)
        return {"probabilities": probabilities, "labels": tf.gather(class_names, top)}

    archive = _export_archive()
    # The first endpoint also becomes `serving_default` (ExportArchive.write_out).
    archive.add_endpoint(
        "serve",
        lambda image: outputs(model(tf.cast(image, tf.float32), training=False)),
        input_signature=[_image_spec(tf, job.reference.image_size, tf.uint8)],
    )
    archive.add_endpoint(
        "serve_float",
        lambda image: outputs(model(image, training=False)),
        input_signature=[_image_spec(tf, job.reference.image_size, tf.float32)],
    )
    archive.write_out(str(job.folder / ARTEFACTS["savedmodel"]), verbose=False)


def _write_tflite(job: _Job) -> None:
    """Keras -> SavedModel (float32 in) -> TFLiteConverter, the path Keras 3's own LiteRT
    export takes, but with builtin ops only so that the file runs on any TFLite runtime."""
    tf = import_tensorflow()
    # after import_tensorflow(), which starts TensorFlow quietly; it has no public name
    from tensorflow.lite.python.convert_phase import ConverterError

    model = job.model
    with tempfile.TemporaryDirectory(dir=job.folder) as saved_model:
        archive = _export_archive()
        archive.add_endpoint(
            "serve",
            lambda image: {"probabilities": model(image, training=False)},
            input_signature=[_image_spec(tf, job.reference.image_size, tf.float32)],
        )
        archive.write_out(saved_model, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model, signature_keys=["serve"])
        _configure_quantization(tf, converter, job)
        try:
            # The converter prints its passes to fd 2: captured, and replayed only on failure.
            with quiet_stderr():
                flatbuffer = converter.convert()
        except ConverterError as exc:
            raise RunError(f"TFLite conversion ({job.quantize}) failed: {exc}") from None
    (job.folder / ARTEFACTS["tflite"]).write_bytes(flatbuffer)


def _configure_quantization(tf, converter, job: _Job) -> None:
    """https://ai.google.dev/edge/litert/models/post_training_quantization"""
    if job.quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if job.quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if job.quantize == "int8":
        images = calibration_images(job.run_path, job.reference.image_size).astype(np.float32)
        job.console.info(f"int8: calibrating on {len(images)} training images")
        converter.representative_dataset = lambda: ([image[None]] for image in images)
        # Integer kernels only: conversion fails rather than fall back to float ops.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]


def _write_onnx(job: _Job) -> None:
    """tf2onnx on the model (see `tlcli.serve.onnx_model`), then ONNX Runtime's quantization."""
    image_size = job.reference.image_size
    metadata = {
        LABELS_KEY: json.dumps(job.reference.labels),
        "image_size": json.dumps(list(image_size)),
        "input": INPUTS["onnx"],
        "tlcli": __version__,
    }
    target = job.folder / ARTEFACTS["onnx"]
    if job.quantize == "none":
        write_onnx(job.model, image_size, target, metadata)
        return
    with tempfile.TemporaryDirectory(dir=job.folder) as scratch:
        float_model = Path(scratch) / "float32.onnx"
        write_onnx(job.model, image_size, float_model, metadata)
        quantize_dynamic(float_model, target)
        job.console.info(
            f"dynamic: {_size(float_model) / 1e6:.1f} MB -> {_size(target) / 1e6:.1f} MB"
        )


WRITERS: dict[str, Callable[[_Job], None]] = {
    "keras": _write_keras,
    "savedmodel": _write_savedmodel,
    "tflite": _write_tflite,
    "onnx": _write_onnx,
}


# ---------------------------------------------------------------------------------- helpers


def _check_request(
    run_dir: Path, export_format: str, stage: str | None, quantize: str
) -> tuple[RunDir, str]:
    if export_format not in EXPORT_FORMATS:
        raise ConfigError(f"format '{export_format}': expected one of {', '.join(EXPORT_FORMATS)}")
    if quantize not in QUANTIZE_MODES:
        raise ConfigError(f"quantize '{quantize}': expected one of {', '.join(QUANTIZE_MODES)}")
    if quantize not in FORMAT_QUANTIZE_MODES[export_format]:
        taking = formats_taking(quantize)
        raise ConfigError(
            f"quantize '{quantize}' applies to the {' and '.join(taking)} "
            f"format{'s' if len(taking) > 1 else ''} only; {export_format} takes "
            f"{' or '.join(FORMAT_QUANTIZE_MODES[export_format])}"
        )
    if export_format == "onnx":
        import_onnx_packages("onnx", "onnxruntime", "tf2onnx", purpose="the onnx format")
    if stage is not None:
        check_stage_name(stage)
    if run_dir.name in STAGES and (run_dir / STAGE_RECORD).is_file():  # a stage folder
        if stage not in (None, run_dir.name):
            raise ConfigError(f"{run_dir} is the {run_dir.name} stage, not {stage}")
        run_dir, stage = run_dir.parent, run_dir.name
    run = RunDir(run_dir)
    if not run.path.is_dir() or not run.started_stages():
        raise ConfigError(
            f"{run_dir}: not a run directory or stage folder (no trained stage in it)"
        )
    return run, run.trained_stage(stage)


def _check_export(
    job: _Job, sample: np.ndarray, expected: np.ndarray, details: str, force: bool
) -> dict[str, CheckResult]:
    """Load the artefact back from disk, compare it with the Keras model; RunError if it fails,
    unless `force`."""
    checks = {
        name: compare(expected, _predict_exported(job, signature, sample), job.tolerance)
        for name, signature in _entry_points(job.export_format)
    }
    for name, check in checks.items():
        job.console.info(f"check ({name}): {check.describe()}")
    failed = [name for name, check in checks.items() if not check.passed]
    if failed and not force:
        raise RunError(
            f"the {details} export ({failed[0]}) does not match the Keras model: "
            f"{checks[failed[0]].describe()}; nothing was written"
            + FAILED_CHECK_HINTS.get((job.export_format, job.quantize), ""),
            remedies=(Remedy("force", "keep it anyway"),),
        )
    if job.quantize == "int8":
        _check_integer(job.folder / ARTEFACTS["tflite"], job.console)
    return checks


def _worst(checks: dict[str, CheckResult]) -> CheckResult:
    """The failed check with the lowest agreement, else the one with the largest |dp|."""
    failed = [check for check in checks.values() if not check.passed]
    if failed:
        return min(failed, key=lambda check: check.agreement)
    return max(checks.values(), key=lambda check: check.max_diff)


def _entry_points(export_format: str) -> list[tuple[str, str]]:
    """(name in reports, SavedModel signature) for each way into the artefact to check."""
    if export_format == "savedmodel":
        return [("serving_default", "serving_default"), ("serve_float", "serve_float")]
    return [(export_format, "serving_default")]


def _predict_exported(job: _Job, signature: str, sample: np.ndarray) -> np.ndarray:
    """The exported artefact, loaded back from disk as a user would load it, on `sample`."""
    exported = load_predictor(job.folder, signature=signature)
    if exported.labels != job.reference.labels:
        raise RunError(
            f"{exported.path.name} reads its class names as {exported.labels[:5]}, "
            f"not the run's {job.reference.labels[:5]}; nothing was written"
        )
    return _predict_in_batches(exported, sample)


def _predict_in_batches(predictor: Predictor, sample: np.ndarray, size: int = 32) -> np.ndarray:
    batches = [sample[start : start + size] for start in range(0, len(sample), size)]
    return np.concatenate([predictor.predict(batch) for batch in batches])


def _check_integer(path: Path, console: Console) -> None:
    total, not_integer = non_integer_layers(path)
    if not total or not_integer:
        raise RunError(
            f"{path.name}: int8 export has float conv/dense layers: {', '.join(not_integer)}"
            if not_integer
            else f"{path.name}: no conv/dense layers found to check"
        )
    console.info(f"int8: all {total} conv/dense layers hold int8 weights and activations")


def _export_archive():
    """An ExportArchive, deliberately without `track(model)`: the endpoints capture the
    weights they use, and tracking the model as well stores every weight twice
    (https://github.com/keras-team/keras/issues/23553). `track` is only needed for lookup
    tables, which no tlcli model has."""
    import_tensorflow()
    # Keras after import_tensorflow(): export's argument errors load no TensorFlow
    import keras

    return keras.export.ExportArchive()


def _image_spec(tf, image_size: tuple[int, int], dtype):
    return tf.TensorSpec([None, *image_size, 3], dtype, name="image")


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _stage_calibration(stage_dir: Path) -> dict | None:
    """stage.json's `calibration` (the temperature the model carries), or None."""
    return (RunDir(stage_dir.parent).stage_state(stage_dir.name) or {}).get("calibration")


def _metadata(
    job: _Job, stage: str, reference: Predictor, checks: dict[str, CheckResult], force: bool
) -> dict:
    passed = all(check.passed for check in checks.values())
    return {
        "format": job.export_format,
        "quantize": job.quantize,
        "artefact": ARTEFACTS[job.export_format],
        "stage": stage,
        "source_model": str(reference.path),
        "image_size": list(reference.image_size),
        "input": INPUTS[job.export_format],
        "labels": reference.labels,
        # per entry point (the SavedModel's two signatures, else the format's one)
        "parity": {
            "passed": passed,
            "forced": force and not passed,
            "checks": {name: result.as_dict() for name, result in checks.items()},
        },
        # The temperature is inside the weights (tlcli.train.calibration): say so here.
        "calibration": _stage_calibration(reference.path.parent),
        "tlcli": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
