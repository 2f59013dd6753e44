"""A trained model loaded for predictions, from whatever tlcli wrote: pixels in, probabilities out.

It loads from a run directory (its latest trained stage, or the stage asked for), a stage folder,
a bare `model.keras`, `model.tflite` or `model.onnx`, an export folder, or a SavedModel folder,
and never needs the run's config: the input size is read from the model and the class names
from the `labels.txt` beside it, or an ONNX file's own metadata (class indices when neither
is there).

(Building a network to train is `tlcli.model.network`.)

>>> import tempfile, keras, numpy as np
>>> folder = Path(tempfile.mkdtemp())
>>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D(),
...                           keras.layers.Dense(2, activation="softmax")])
>>> model.save(folder / "model.keras")
>>> _ = (folder / "labels.txt").write_text("cat\\ndog\\n")
>>> predictor = load_predictor(folder)
>>> predictor.kind, predictor.image_size, predictor.labels
('keras', (8, 8), ['cat', 'dog'])
>>> predictor.predict(np.zeros((5, 8, 8, 3), np.uint8)).shape
(5, 2)
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tlcli.errors import ConfigError, RunError
from tlcli.rundir import LABELS_FILE, RunDir, check_stage_name
from tlcli.runtime.startup import import_tensorflow, quiet_stderr
from tlcli.serve.formats import ARTEFACTS
from tlcli.serve.onnx_model import OUTPUT_NAME, metadata_labels, onnx_session

MODEL_NAMES = tuple(ARTEFACTS.values())
MODEL_SUFFIXES = (".keras", ".tflite", ".onnx")

Predict = Callable[[np.ndarray], np.ndarray]
ONNX_DTYPES = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8}


@dataclass
class Predictor:
    """A loaded model: `predict(uint8 [N, H, W, 3]) -> float32 [N, classes]`."""

    path: Path
    kind: str  # "keras", "savedmodel", "tflite" or "onnx"
    image_size: tuple[int, int]  # (height, width)
    labels: list[str]
    # The labels.txt (or the ONNX file) the labels were read from; None: class indices.
    labels_file: Path | None
    predict: Predict

    def describe(self) -> str:
        height, width = self.image_size
        return f"{self.path} ({self.kind}, {height}x{width} px, {len(self.labels)} classes)"


def find_model(target: Path, stage: str | None = None) -> Path:
    """The model file (or SavedModel folder) that `target` names.

    A run directory gives its `stage` (default: unfreeze when finished, else finetune); a stage
    or export folder gives the model inside it; a model file or SavedModel folder is itself.

    >>> find_model(Path("configs"))
    Traceback (most recent call last):
    ...
    tlcli.errors.ConfigError: configs: not a run directory, stage folder or export: found no \
model.keras, saved_model, model.tflite, model.onnx or saved_model.pb in it
    """
    if stage is not None:
        check_stage_name(stage)
    if not target.exists():
        raise ConfigError(f"{target}: no such file or directory")
    run = RunDir(target)
    if target.is_dir() and run.started_stages():
        return run.model_path(run.trained_stage(stage))
    if stage is not None:
        raise ConfigError(f"a stage can be chosen in a run directory only; {target} is not one")
    if target.is_file():
        if target.suffix in MODEL_SUFFIXES:
            return target
        raise ConfigError(f"{target}: not a model file (expected .keras, .tflite or .onnx)")
    if (target / "saved_model.pb").is_file():
        return target
    for name in MODEL_NAMES:
        if (target / name).exists():
            return target / name
    raise ConfigError(
        f"{target}: not a run directory, stage folder or export: found no "
        f"{', '.join(MODEL_NAMES)} or saved_model.pb in it"
    )


def load_predictor(
    target: Path, stage: str | None = None, signature: str = "serving_default"
) -> Predictor:
    """Load what `target` names (see `find_model`); `signature` picks a SavedModel endpoint."""
    path = find_model(target, stage)
    if path.suffix == ".onnx":
        return _load_onnx(path)
    if path.suffix == ".keras":
        kind, loaded = "keras", _load_keras(path)
    elif path.suffix == ".tflite":
        kind, loaded = "tflite", _load_tflite(path)
    else:
        kind, loaded = "savedmodel", _load_savedmodel(path, signature)
    image_size, num_classes, predict = loaded
    labels, labels_file = read_labels(path, num_classes)
    return Predictor(path, kind, image_size, labels, labels_file, predict)


def keras_predictor(model, path: Path) -> Predictor:
    """A Predictor around a Keras model already in memory, saved at `path` (for its labels)."""
    labels, labels_file = read_labels(path, int(model.output_shape[-1]))
    image_size = _image_size(path, model.input_shape)
    return Predictor(path, "keras", image_size, labels, labels_file, _keras_predict(model))


def read_labels(model_path: Path, num_classes: int) -> tuple[list[str], Path | None]:
    """Class names from the labels.txt beside the model (or beside its SavedModel folder)."""
    candidates = [model_path.parent / LABELS_FILE]
    if model_path.is_dir():
        candidates.insert(0, model_path / LABELS_FILE)
    for labels_file in candidates:
        if labels_file.is_file():
            labels = labels_file.read_text(encoding="utf-8").splitlines()
            if len(labels) != num_classes:
                raise RunError(
                    f"{labels_file} names {len(labels)} classes, but {model_path} has "
                    f"{num_classes} outputs"
                )
            return labels, labels_file
    return [str(index) for index in range(num_classes)], None


def tflite_interpreter(path: Path):
    """A TFLite interpreter for `path`: LiteRT's when installed, else TensorFlow's own.

    TensorFlow 2.21 still ships `tf.lite.Interpreter` but warns on every use that it moved to
    the `ai_edge_litert` package; both run the same flatbuffers.
    """
    try:  # optional: LiteRT's interpreter when installed
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = import_tensorflow().lite.Interpreter
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")
        return Interpreter(model_path=str(path), num_threads=os.cpu_count() or 1)


# ---------------------------------------------------------------------------------- formats


def load_keras_model(path: Path):
    """keras.models.load_model for inference; a file Keras cannot read is a RunError."""
    import_tensorflow()
    # Keras after import_tensorflow(): ONNX and LiteRT predictions load no TensorFlow
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: cannot load the model: {exc}") from None


def _load_keras(path: Path) -> tuple[tuple[int, int], int, Predict]:
    model = load_keras_model(path)
    return _image_size(path, model.input_shape), int(model.output_shape[-1]), _keras_predict(model)


def _keras_predict(model) -> Predict:
    def predict(pixels: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_on_batch(pixels.astype(np.float32)), dtype=np.float32)

    return predict


def _load_savedmodel(path: Path, signature: str) -> tuple[tuple[int, int], int, Predict]:
    tf = import_tensorflow()
    loaded = tf.saved_model.load(str(path))
    if signature not in loaded.signatures:
        raise RunError(
            f"{path}: no '{signature}' signature (it has {', '.join(loaded.signatures)})"
        )
    function = loaded.signatures[signature]
    inputs = function.structured_input_signature[1]
    outputs = function.structured_outputs
    if len(inputs) != 1 or ("probabilities" not in outputs and len(outputs) != 1):
        raise RunError(f"{path}: '{signature}' must take one image tensor and return probabilities")
    (input_name, spec), output_name = next(iter(inputs.items())), "probabilities"
    if output_name not in outputs:
        output_name = next(iter(outputs))

    def run_batch(pixels: np.ndarray) -> np.ndarray:
        # `loaded` is referenced here on purpose: a signature alone does not keep the
        # SavedModel's variables alive.
        result = loaded.signatures[signature](**{input_name: tf.constant(pixels, spec.dtype)})
        return result[output_name].numpy().astype(np.float32)

    def predict(pixels: np.ndarray) -> np.ndarray:
        if spec.shape[0] is not None:
            return _predict_in_chunks(pixels, int(spec.shape[0]), run_batch)
        return run_batch(pixels)

    return _image_size(path, spec.shape), int(outputs[output_name].shape[-1]), predict


def _load_tflite(path: Path) -> tuple[tuple[int, int], int, Predict]:
    interpreter = tflite_interpreter(path)
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise RunError(f"{path}: expected one input and one output tensor")
    image, probabilities = inputs[0], outputs[0]
    fixed_batch = int(image["shape_signature"][0])  # -1 when any batch size is accepted
    _allocate(interpreter)

    def predict(pixels: np.ndarray) -> np.ndarray:
        if fixed_batch > 0:
            return _predict_in_chunks(pixels, fixed_batch, run_batch)
        return run_batch(pixels)

    def run_batch(pixels: np.ndarray) -> np.ndarray:
        if interpreter.get_input_details()[0]["shape"][0] != len(pixels):
            interpreter.resize_tensor_input(image["index"], [len(pixels), *image["shape"][1:]])
            _allocate(interpreter)
        interpreter.set_tensor(image["index"], _quantize(pixels, image))
        interpreter.invoke()
        return _dequantize(interpreter.get_tensor(probabilities["index"]), probabilities)

    return _image_size(path, image["shape"]), int(probabilities["shape"][-1]), predict


def _load_onnx(path: Path) -> Predictor:
    """ONNX Runtime on the file; the class names from its metadata, else labels.txt."""
    session = onnx_session(path)
    inputs, outputs = session.get_inputs(), session.get_outputs()
    names = [output.name for output in outputs]
    if len(inputs) != 1 or (OUTPUT_NAME not in names and len(outputs) != 1):
        raise RunError(f"{path}: expected one image input and a probabilities output")
    image, output_name = inputs[0], OUTPUT_NAME if OUTPUT_NAME in names else names[0]
    dtype = ONNX_DTYPES.get(image.type)
    if dtype is None:
        raise RunError(f"{path}: input '{image.name}' is {image.type}; expected float or uint8")
    num_classes = outputs[names.index(output_name)].shape[-1]
    if not isinstance(num_classes, int):
        raise RunError(f"{path}: output '{output_name}' has no fixed number of classes")
    labels = metadata_labels(session)
    if labels is None:
        labels, labels_file = read_labels(path, num_classes)
    elif len(labels) != num_classes:
        raise RunError(f"{path}: its metadata names {len(labels)} classes for {num_classes}")
    else:
        labels_file = path

    def predict(pixels: np.ndarray) -> np.ndarray:
        feed = {image.name: pixels.astype(dtype)}
        return np.asarray(session.run([output_name], feed)[0], dtype=np.float32)

    image_size = _image_size(path, image.shape)
    return Predictor(path, "onnx", image_size, labels, labels_file, predict)


def _allocate(interpreter) -> None:
    # The runtime announces its CPU delegate (XNNPACK) on fd 2 here: not news for a user.
    with quiet_stderr():
        interpreter.allocate_tensors()


def _predict_in_chunks(pixels: np.ndarray, size: int, run_batch: Predict) -> np.ndarray:
    """For models compiled with a fixed batch size: pad the last chunk, drop the padding."""
    results = []
    for start in range(0, len(pixels), size):
        chunk = pixels[start : start + size]
        padding = np.zeros((size - len(chunk), *chunk.shape[1:]), dtype=chunk.dtype)
        results.append(run_batch(np.concatenate([chunk, padding]))[: len(chunk)])
    return np.concatenate(results)


def _quantize(pixels: np.ndarray, details: dict) -> np.ndarray:
    """Pixels as the input tensor wants them: float as is, integer types via their scale."""
    dtype = np.dtype(details["dtype"])
    scale, zero_point = details["quantization"]
    if dtype.kind == "f" or not scale:
        return pixels.astype(dtype)
    info = np.iinfo(dtype)
    values = np.round(pixels.astype(np.float32) / scale + zero_point)
    return np.clip(values, info.min, info.max).astype(dtype)


def _dequantize(values: np.ndarray, details: dict) -> np.ndarray:
    scale, zero_point = details["quantization"]
    if np.dtype(details["dtype"]).kind != "f" and scale:
        return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)
    return values.astype(np.float32)


def _image_size(path: Path, shape) -> tuple[int, int]:
    dims = list(shape)
    if len(dims) != 4 or dims[3] != 3 or any(d is None or int(d) <= 0 for d in dims[1:3]):
        raise RunError(f"{path}: expected an image input of shape [N, H, W, 3], found {dims}")
    return int(dims[1]), int(dims[2])
