"""The formats tlcli exports and predicts to: names only, no heavy imports (the CLI reads them).

>>> EXPORT_FORMATS, ARTEFACTS["onnx"]
(('keras', 'savedmodel', 'tflite', 'onnx'), 'model.onnx')
>>> formats_taking("dynamic")
['tflite', 'onnx']
"""

from __future__ import annotations

from tlcli.rundir import MODEL_FILES

# The file (or folder) each model format is saved as: what a stage or export folder may hold,
# in the order they are looked for.
ARTEFACTS = MODEL_FILES
EXPORT_FORMATS = tuple(ARTEFACTS)
QUANTIZE_MODES = ("none", "dynamic", "float16", "int8")
# The quantize modes each format offers (TFLite's converter, ONNX Runtime's quantization).
FORMAT_QUANTIZE_MODES = {
    "keras": ("none",),
    "savedmodel": ("none",),
    "tflite": QUANTIZE_MODES,
    "onnx": ("none", "dynamic"),
}
PREDICTION_FORMATS = ("table", "csv", "json")
# The optional extra (`pip install 'tlcli[onnx]'`) that brings ONNX export and ONNX Runtime.
ONNX_EXTRA = "onnx"


def formats_taking(quantize: str) -> list[str]:
    """The export formats that offer the quantize mode `quantize`."""
    return [name for name, modes in FORMAT_QUANTIZE_MODES.items() if quantize in modes]
