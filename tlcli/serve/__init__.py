"""Using a trained run: load a model for predictions, predict image files, export for serving,
and check that an export predicts what the run's model predicts.

    formats.py    the export and output formats, by name (light: the CLI reads it)
    predictor.py  load a trained model from a run, stage, export or model file
    predict.py    top-k labels for image files, as a table, CSV or JSON
    export.py     keras, SavedModel, TFLite and ONNX exports with their labels
    onnx_model.py  write, quantize and open ONNX files (the optional `tlcli[onnx]` extra)
    parity.py     the export's self-check against the run's model

May import: `tlcli.data` (decoding, exactly as in training), `tlcli.runtime`, the root helpers.
Never `tlcli.train`: serving needs no training code.
"""
