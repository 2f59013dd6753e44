"""Flip test-time augmentation inside the saved network: the mean of the predictions for the
image and for its mirror image.

    image -> [network] ----------------------------> mean -> probabilities
          -> mirror -> [the same network layers] ---^

Both branches call the same layer objects, so the model has one set of weights (the output
layer `predictions` stays findable and scalable, see `tlcli.model.output_layer`). The mirror is
built from plain Keras layers (Permute, a fixed 0/1 Dense, Permute) so model.keras loads
anywhere without tlcli's code and every export format carries it; it is exact (each output is
one input times 1.0). Training never sees this wrapper: stages train the plain network
(`without_tta`) and wrap it when they save.

A calibrated wrapper (`tlcli.train.calibration`) scales the mean, not each branch:

    ... -> mean -> log -> / T -> softmax

softmax(log p / T) ranks the classes as p does, so calibration never changes the most likely
class; scaling each branch's logits before the mean could. The log is a Keras op in the
functional graph (`keras.ops.log`), which model.keras saves and loads like a layer.

>>> from tlcli.bases import build_base
>>> from tlcli.config import HeadConfig
>>> from tlcli.model.network import build_classifier
>>> plain = build_classifier(
...     build_base("vgg16", (32, 32), None), 3, HeadConfig(), "avg", "vgg16", base_training=False
... )
>>> wrapped = with_flip_tta(plain)
>>> has_tta(wrapped), has_tta(plain), len(wrapped.weights) - len(plain.weights)
(True, False, 1)
>>> image = np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
>>> both = (plain.predict(image, verbose=0) + plain.predict(image[:, :, ::-1], verbose=0)) / 2
>>> bool(np.allclose(wrapped.predict(image, verbose=0), both, atol=1e-6))
True
>>> [layer.name for layer in without_tta(wrapped, base_training=False).layers] == [
...     layer.name for layer in plain.layers]
True
>>> calibrated = rewrapped(wrapped, 2.0)
>>> tta_temperature(calibrated), tta_temperature(rewrapped(calibrated, 1.0))
(2.0, 1.0)
>>> mean = wrapped.predict(image, verbose=0)
>>> bool(np.allclose(calibrated.predict(image, verbose=0), np.sqrt(mean) / np.sqrt(mean).sum()))
True
"""

from __future__ import annotations

import keras
import numpy as np

from tlcli.model.network import assemble

TTA_PREFIX = "tta_"  # layers that only the wrapper has
MIRROR_LAYER = "tta_mirror"
TEMPERATURE_LAYER = "tta_temperature"
# Floor under the mean before its log: far below any probability the argmax could take, and
# no -inf for exports to carry.
SMALLEST_PROBABILITY = 1e-30


def mirror_layers(width: int) -> list[keras.layers.Layer]:
    """(N, H, W, C) -> the same images mirrored left to right, as three weight-fixed layers."""
    kernel = np.eye(width, dtype=np.float32)[::-1]
    flip = keras.layers.Dense(
        width, use_bias=False, trainable=False, name=MIRROR_LAYER, dtype="float32"
    )
    flip.build((None, None, None, width))
    flip.set_weights([kernel])
    return [
        keras.layers.Permute((1, 3, 2), name="tta_to_columns"),
        flip,
        keras.layers.Permute((1, 3, 2), name="tta_from_columns"),
    ]


def mirrored(model: keras.Model, name: str = "mirrored") -> keras.Model:
    """`model` applied to the mirror image of its input (same layers, same weights)."""
    inputs = keras.Input(model.input_shape[1:], name="image")
    x = inputs
    for layer in mirror_layers(model.input_shape[2]):
        x = layer(x)
    return keras.Model(inputs, model(x), name=name)


def with_flip_tta(model: keras.Model, temperature: float = 1.0) -> keras.Model:
    """The classifier `model` (a chain from `assemble`) predicting the mean over the image and
    its mirror; with a `temperature` other than 1, softmax(log mean / temperature)."""
    inputs = keras.Input(model.input_shape[1:], name="image")
    chain = _chain(model)
    mirror = inputs
    for layer in mirror_layers(model.input_shape[2]):
        mirror = layer(mirror)
    branches = []
    for x in (inputs, mirror):
        for layer in chain:
            x = layer(x, training=False) if isinstance(layer, keras.Model) else layer(x)
        branches.append(x)
    outputs = keras.layers.Average(name="tta_mean", dtype="float32")(branches)
    if temperature != 1.0:
        outputs = _tempered(outputs, temperature)
    return keras.Model(inputs, outputs, name=model.name)


def tta_temperature(model: keras.Model) -> float:
    """The temperature a wrapped model divides its mean's log by (1.0: none)."""
    for layer in model.layers:
        if layer.name == TEMPERATURE_LAYER:
            return float(1 / layer.scale)
    return 1.0


def rewrapped(model: keras.Model, temperature: float) -> keras.Model:
    """A wrapped model again, over the same layers, with `temperature` after its mean."""
    return with_flip_tta(without_tta(model, base_training=False), temperature)


def has_tta(model: keras.Model) -> bool:
    return any(layer.name.startswith(TTA_PREFIX) for layer in model.layers)


def without_tta(model: keras.Model, *, base_training: bool | None) -> keras.Model:
    """The plain classifier inside a wrapped one (the same layer objects)."""
    return assemble(_chain(model), tuple(model.input_shape[1:3]), base_training=base_training)


def _tempered(mean, temperature: float):
    log_mean = keras.ops.log(keras.ops.maximum(mean, SMALLEST_PROBABILITY))
    scaled = keras.layers.Rescaling(1 / temperature, name=TEMPERATURE_LAYER, dtype="float32")(
        log_mean
    )
    return keras.layers.Softmax(name="tta_calibrated", dtype="float32")(scaled)


def _chain(model: keras.Model) -> list[keras.layers.Layer]:
    """The classifier's layers after its input, without the wrapper's own."""
    return [layer for layer in model.layers[1:] if not layer.name.startswith(TTA_PREFIX)]
