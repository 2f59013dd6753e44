"""The network's output layer, `Dense(classes, softmax, name="predictions")`: find it, scale its
logits, keep and restore its weights.

Dividing the layer's kernel and bias by T divides its logits by T: that is temperature scaling
(`tlcli.train.calibration`), with no new layer, so a calibrated model.keras still loads with
plain Keras and every export inherits it. The weights from before calibration are kept in a
file beside the model, so calibrating again starts from them and `unfreeze` trains on from
the uncalibrated head.

>>> from tlcli.bases import build_base
>>> from tlcli.config import HeadConfig
>>> from tlcli.model.network import build_classifier
>>> model = build_classifier(build_base("vgg16", (32, 32), None), 3, HeadConfig(), "avg",
...                          "vgg16", base_training=False)
>>> kernel = output_layer(model).get_weights()[0].copy()
>>> scale_logits(model, 0.5)
>>> bool(np.allclose(output_layer(model).get_weights()[0], kernel * 0.5))
True
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from tlcli.errors import RunError
from tlcli.files import atomic_path

OUTPUT_LAYER = "predictions"


def output_layer(model: keras.Model) -> keras.layers.Dense:
    """The `predictions` layer, in the model or in a model nested in it (a wrapper)."""
    for layer in model.layers:
        if layer.name == OUTPUT_LAYER and isinstance(layer, keras.layers.Dense):
            return layer
        if isinstance(layer, keras.Model):
            try:
                return output_layer(layer)
            except RunError:
                continue
    raise RunError(f"{model.name}: no Dense output layer named '{OUTPUT_LAYER}' in the model")


def scale_logits(model: keras.Model, factor: float) -> None:
    """Multiply the output layer's logits by `factor` (its kernel and bias)."""
    layer = output_layer(model)
    layer.set_weights([np.asarray(w) * np.float32(factor) for w in layer.get_weights()])


def keep_output_weights(model: keras.Model, path: Path) -> None:
    """Save the output layer's weights to `path` (atomically), unless the file exists."""
    if path.is_file():
        return
    kernel, bias = output_layer(model).get_weights()
    with atomic_path(path) as tmp:
        np.savez(tmp, kernel=kernel, bias=bias)


def restore_output_weights(model: keras.Model, path: Path) -> bool:
    """Put the weights saved at `path` back into the output layer; False when there are none."""
    if not path.is_file():
        return False
    with np.load(path) as saved:
        output_layer(model).set_weights([saved["kernel"], saved["bias"]])
    return True
