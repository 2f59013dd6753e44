"""The formats tlcli exports and predicts to: names only, no heavy imports (the CLI reads them).

>>> EXPORT_FORMATS, ARTEFACTS["tflite"]
(('keras', 'savedmodel', 'tflite'), 'model.tflite')
"""

from __future__ import annotations

from tlcli.rundir import MODEL_FILE

# The file (or folder) each model format is saved as: what a stage or export folder may hold,
# in the order they are looked for.
ARTEFACTS = {"keras": MODEL_FILE, "savedmodel": "saved_model", "tflite": "model.tflite"}
EXPORT_FORMATS = tuple(ARTEFACTS)
QUANTIZE_MODES = ("none", "dynamic", "float16", "int8")
PREDICTION_FORMATS = ("table", "csv", "json")
