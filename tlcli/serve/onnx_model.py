"""ONNX files: write a Keras model as one, quantize it, and open one in ONNX Runtime.

The ONNX packages are the optional extra `tlcli[onnx]` (onnx, onnxruntime, tf2onnx); each
function imports what it needs and says which extra to install when it is missing:

>>> import_onnx_packages("no_such_onnx_package", purpose="the example")
Traceback (most recent call last):
...
tlcli.errors.ConfigError: the example needs no_such_onnx_package, which is not installed: \
pip install 'tlcli[onnx]'

The model is converted with tf2onnx, on a `tf.function` that calls the Keras model. Keras 3.15's
own `model.export(format="onnx")` does the same on the TensorFlow backend (tf2onnx's
`convert.from_function` on the model's concrete function), but names the output after a graph
tensor (`Identity:0`) and first patches NumPy globally (`np.object = object`) for tf2onnx
releases older than 1.17. Calling tf2onnx ourselves names the input `image` and the output
`probabilities`, the names the SavedModel export uses.
"""

from __future__ import annotations

import importlib
import json
import logging
from pathlib import Path
from types import ModuleType

from tlcli.errors import ConfigError, RunError
from tlcli.runtime.startup import import_tensorflow, quiet_stderr
from tlcli.serve.formats import ONNX_EXTRA

# Opset 17 (ONNX 1.12, 2022): recent enough for every op a Keras image classifier needs, old
# enough for every current runtime (ONNX Runtime, TensorRT, OpenVINO, onnxruntime-web).
OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
BATCH_DIM = "N"
LABELS_KEY = "labels"  # metadata_props key: the class names, a JSON list in output order


def import_onnx_packages(*names: str, purpose: str) -> list[ModuleType]:
    """Import `names`; a ConfigError naming the extra when any is missing."""
    if "tf2onnx" in names:
        import_tensorflow()  # tf2onnx imports TensorFlow: let tlcli start it, quietly
    modules, missing = [], []
    for name in names:
        try:
            # TensorFlow's shared libraries that tf2onnx loads announce themselves on fd 2.
            with quiet_stderr():
                modules.append(importlib.import_module(name))
        except ImportError:
            missing.append(name)
    if missing:
        raise ConfigError(
            f"{purpose} needs {', '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed: "
            f"pip install 'tlcli[{ONNX_EXTRA}]'"
        )
    return modules


def write_onnx(model, image_size: tuple[int, int], path: Path, metadata: dict[str, str]) -> None:
    """`model` (float32 RGB 0..255 [N, H, W, 3] in, probabilities out) as an ONNX file at `path`,
    with `metadata` (string values) in the model's metadata_props."""
    tf = import_tensorflow()
    tf2onnx, onnx = import_onnx_packages("tf2onnx", "onnx", purpose="ONNX export")
    spec = tf.TensorSpec([None, *image_size, 3], tf.float32, name=INPUT_NAME)

    @tf.function(input_signature=[spec])
    def serve(image):
        return {OUTPUT_NAME: model(image, training=False)}

    # TensorFlow's graph passes and tf2onnx log to fd 2: captured, replayed only on failure.
    with quiet_stderr():
        proto, _ = tf2onnx.convert.from_function(serve, [spec], opset=OPSET)
    # tf2onnx keeps going past an op it cannot convert (leaving the TensorFlow op in the graph):
    # the checker catches that here rather than ONNX Runtime later.
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise RunError(f"ONNX conversion produced an invalid model: {first_line}") from None
    _name_batch_dimension(proto)
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))


def quantize_dynamic(source: Path, target: Path) -> None:
    """ONNX Runtime's dynamic quantization: int8 conv/matmul weights, activations quantized on
    the fly (https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html).
    The model's metadata_props are kept."""
    (quantization,) = import_onnx_packages("onnxruntime.quantization", purpose="ONNX quantization")
    # It logs a suggestion (run its pre-processing) on the root logger; tf2onnx has already
    # folded and fused the graph, and the pre-processed model measured no better here.
    logging.disable(logging.WARNING)
    try:
        quantization.quantize_dynamic(
            str(source), str(target), weight_type=quantization.QuantType.QInt8
        )
    finally:
        logging.disable(logging.NOTSET)


def onnx_session(path: Path):
    """An ONNX Runtime session for `path` (CUDA when onnxruntime-gpu offers it, else CPU)."""
    (ort,) = import_onnx_packages("onnxruntime", purpose=f"reading {path.name}")
    state = ort.capi.onnxruntime_pybind11_state  # where its load errors are defined

    available = ort.get_available_providers()
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    errors = tuple(
        getattr(state, name)
        for name in ("Fail", "InvalidArgument", "InvalidGraph", "InvalidProtobuf", "NoSuchFile")
        if hasattr(state, name)
    )
    try:
        return ort.InferenceSession(str(path), providers=providers)
    except errors as exc:
        raise RunError(f"{path}: ONNX Runtime cannot load it: {exc}") from None


def metadata_labels(session) -> list[str] | None:
    """The class names stored in the model's metadata_props, if any."""
    stored = session.get_modelmeta().custom_metadata_map.get(LABELS_KEY)
    return None if stored is None else [str(label) for label in json.loads(stored)]


def _name_batch_dimension(proto) -> None:
    """tf2onnx names an unknown batch size `unk__<n>`; `N` says the same to a reader, and one
    name for input and output says they share it."""
    for value in [*proto.graph.input, *proto.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_param"):
            dims[0].dim_param = BATCH_DIM
