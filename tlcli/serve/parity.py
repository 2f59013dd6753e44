"""Does an exported model still predict what the run's Keras model predicts? Measured, not assumed.

Every export runs a sample of the run's own images through the artefact, loaded back from disk,
and through the stage's model.keras, and compares the probabilities. The sample is up to 64
images spread over the `val` rows of `<run>/split.csv`, topped up from `test`, then `train`
when val holds fewer. Two numbers decide:

- max |dp|: the largest absolute difference in any class probability, over all images;
- top-1 agreement: the share of images whose most likely class is the same. A swap between two
  classes the Keras model scores within 0.01 of each other is a near-tie, not a disagreement:
  no export can be expected to keep the order of a coin flip.

Limits per format and quantize mode, in one table (`TOLERANCES`). Float exports (`none`) must
reproduce the model: they are judged by max |dp|. Quantized ones (`float16`, `dynamic`, `int8`,
ONNX `dynamic`) cannot: float16 weights alone move a confident model's probabilities by a few
hundredths, and 8-bit weights or activations by more. They are judged by top-1 agreement, with
a loose bound on |dp| as a sanity check that a broken export (a wrong input scale, a collapsed
weight tensor) exceeds. Figures on real photographs: the export-quality benchmark
(docs/benchmarks.md).

>>> keras_probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.502, 0.498]])
>>> tflite_probs = np.array([[0.88, 0.12], [0.25, 0.75], [0.497, 0.503]])
>>> result = compare(keras_probs, tflite_probs, tolerance("tflite", "int8"))
>>> result.passed, result.describe()
(True, '3 images: max |dp| 0.05 (limit 0.5), top-1 agreement 100% (min 90%, 1 near-tie swap(s))')
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tlcli.data.images import decode_many
from tlcli.errors import RunError
from tlcli.rundir import SPLIT_FILE
from tlcli.serve.predictor import tflite_interpreter

SAMPLE_SIZE = 64
CALIBRATION_SIZE = 100  # the TFLite guide suggests ~100-500 representative samples
NEAR_TIE = 0.01
SAMPLE_SPLITS = ("val", "test", "train")
WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")


@dataclass(frozen=True)
class Tolerance:
    max_diff: float  # largest |p_export - p_keras| allowed
    min_agreement: float  # smallest share of images with the same top-1 class (near-ties agree)


# (format, quantize) -> limits. Agreement is measured on up to SAMPLE_SIZE images, so a limit
# below 100% must leave room for a few flips of images the model itself is unsure of.
TOLERANCES = {
    ("keras", "none"): Tolerance(1e-4, 1.0),
    ("savedmodel", "none"): Tolerance(1e-4, 1.0),
    ("tflite", "none"): Tolerance(1e-4, 1.0),
    ("onnx", "none"): Tolerance(1e-4, 1.0),
    ("tflite", "float16"): Tolerance(0.10, 0.98),
    ("tflite", "dynamic"): Tolerance(0.50, 0.90),
    ("tflite", "int8"): Tolerance(0.50, 0.90),
    ("onnx", "dynamic"): Tolerance(0.50, 0.90),
}


def tolerance(export_format: str, quantize: str) -> Tolerance:
    """The limits an export of `export_format` quantized as `quantize` is checked against."""
    return TOLERANCES[(export_format, quantize)]


@dataclass
class CheckResult:
    images: int
    max_diff: float
    agreeing: int  # same top-1 class, or a near-tie swap
    near_ties: int  # of which near-tie swaps
    tolerance: Tolerance

    @property
    def agreement(self) -> float:
        return self.agreeing / self.images

    @property
    def passed(self) -> bool:
        return (
            self.max_diff <= self.tolerance.max_diff
            and self.agreement >= self.tolerance.min_agreement
        )

    def describe(self) -> str:
        ties = f", {self.near_ties} near-tie swap(s)" if self.near_ties else ""
        return (
            f"{self.images} images: max |dp| {self.max_diff:.2g} "
            f"(limit {self.tolerance.max_diff:g}), top-1 agreement {self.agreement:.0%} "
            f"(min {self.tolerance.min_agreement:.0%}{ties})"
        )

    def as_dict(self) -> dict:
        return {**asdict(self), "agreement": self.agreement, "passed": self.passed}


def compare(reference: np.ndarray, exported: np.ndarray, tolerance: Tolerance) -> CheckResult:
    """Compare two [N, classes] probability arrays for the same images.

    >>> compare(np.array([[0.9, 0.1]]), np.array([[0.89, 0.11]]), tolerance("onnx", "none")).passed
    False
    """
    if reference.shape != exported.shape:
        raise RunError(f"the export returns shape {exported.shape}, the model {reference.shape}")
    rows = np.arange(len(reference))
    chosen = exported.argmax(axis=1)
    same = chosen == reference.argmax(axis=1)
    near_tie = ~same & (reference.max(axis=1) - reference[rows, chosen] <= NEAR_TIE)
    return CheckResult(
        images=len(reference),
        max_diff=float(np.abs(reference - exported).max()),
        agreeing=int((same | near_tie).sum()),
        near_ties=int(near_tie.sum()),
        tolerance=tolerance,
    )


def check_images(run_path: Path, size: tuple[int, int], limit: int = SAMPLE_SIZE) -> np.ndarray:
    """Up to `limit` decoded images (uint8 [N, H, W, 3]): val first, then test, then train."""
    splits = _split_paths(run_path)
    chosen: list[Path] = []
    for name in SAMPLE_SPLITS:
        chosen += _spread(splits.get(name, []), limit - len(chosen))
    return _decode_all(chosen, size, f"{run_path / SPLIT_FILE} (val, test, train)")


def calibration_images(
    run_path: Path, size: tuple[int, int], limit: int = CALIBRATION_SIZE
) -> np.ndarray:
    """Up to `limit` training images, spread over the split, for int8 calibration."""
    train = _spread(_split_paths(run_path).get("train", []), limit)
    return _decode_all(train, size, f"the train rows of {run_path / SPLIT_FILE}")


def non_integer_layers(tflite_path: Path) -> tuple[int, list[str]]:
    """(number of conv/dense ops, names of those whose weights or outputs are not int8).

    A RunError when the interpreter lacks `_get_ops_details` (see below).
    """
    interpreter = tflite_interpreter(tflite_path)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    # No public interpreter API maps an op to its weight tensor; _get_ops_details does, and
    # exists in both tf.lite and ai_edge_litert (tested with TensorFlow 2.21).
    ops_details = getattr(interpreter, "_get_ops_details", None)
    if ops_details is None:
        raise RunError(
            f"cannot check that {tflite_path.name} is integer-only: this TFLite interpreter "
            f"({type(interpreter).__module__}) has no _get_ops_details; it was tested with "
            "TensorFlow 2.21's"
        )
    ops = [op for op in ops_details() if op["op_name"] in WEIGHTED_OPS]
    not_integer = [
        tensors[op["outputs"][0]]["name"]
        for op in ops
        if np.dtype(tensors[op["inputs"][1]]["dtype"]) != np.int8
        or np.dtype(tensors[op["outputs"][0]]["dtype"]) != np.int8
    ]
    return len(ops), not_integer


# ---------------------------------------------------------------------------------- helpers


def _split_paths(run_path: Path) -> dict[str, list[Path]]:
    split_csv = run_path / SPLIT_FILE
    if not split_csv.is_file():
        raise RunError(f"{split_csv} is missing: the export check needs the run's images")
    splits: dict[str, list[Path]] = {}
    with split_csv.open(newline="", encoding="utf-8") as rows:
        for row in csv.DictReader(rows):
            splits.setdefault(row["split"], []).append(Path(row["path"]))
    return splits


def _spread(paths: list[Path], limit: int) -> list[Path]:
    """Up to `limit` paths evenly spaced over the list: split.csv is sorted by class."""
    if limit <= 0 or not paths:
        return []
    if len(paths) <= limit:
        return list(paths)
    return [paths[int(i)] for i in np.linspace(0, len(paths) - 1, limit).round()]


def _decode_all(paths: list[Path], size: tuple[int, int], where: str) -> np.ndarray:
    pixels = [d.pixels for d in decode_many(paths, size) if d.pixels is not None]
    if not pixels:
        raise RunError(f"no readable images in {where}: the export cannot be checked")
    return np.stack(pixels)
