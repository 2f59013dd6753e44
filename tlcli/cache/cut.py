"""Cut a classifier into a frozen bottom and a trainable top that share its layers.

A frozen bottom's outputs never change, so the cache computes them once while only the top
trains. Both halves reuse the classifier's own layer objects: training the top trains the
classifier, and the saved model.keras is the whole network as usual.

    finetune: bottom = image -> preprocessing -> base -> pooling;  top = the rest of the head
    unfreeze: bottom = image -> preprocessing -> frozen base blocks;  top = trainable blocks + head

>>> from tlcli.bases import build_base
>>> from tlcli.config import HeadConfig
>>> from tlcli.model.network import build_classifier
>>> model = build_classifier(
...     build_base("vgg16", (32, 32), None), 3, HeadConfig(), "avg", "vgg16", base_training=False
... )
>>> cut = cut_at_head(model)
>>> cut.at, cut.bottom.output_shape, cut.top.input_shape
('head_pool', (None, 512), (None, 512))
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from tlcli.model.network import find_base


@dataclass
class NetworkCut:
    bottom: keras.Model  # frozen: computed once per image and cached
    top: keras.Model  # trains on the bottom's outputs
    at: str  # the layer whose output is the cut, for messages and cache keys


def cut_at_head(model: keras.Model) -> NetworkCut:
    """Cut after the pooling layer: the frozen base's pooled features feed the head."""
    pool = model.get_layer("head_pool")
    bottom = keras.Model(model.input, pool.output, name="frozen_bottom")
    top = keras.Model(pool.output, model.output, name="trainable_top")
    return NetworkCut(bottom, top, pool.name)


def cut_in_base(model: keras.Model) -> NetworkCut | None:
    """Cut inside the base, just below its first trainable layer, at a clean point.

    A clean point is a layer whose output alone carries everything the rest needs (a VGG block
    output, a ResNet stage output); the cut moves down until it finds one. None when nothing
    below the first trainable layer is frozen.
    """
    base = find_base(model)
    layers = base.layers
    first_trainable = next((i for i, layer in enumerate(layers) if layer.trainable_weights), None)
    if first_trainable is None or first_trainable <= 1:
        return None
    for index in range(first_trainable - 1, 0, -1):
        layer = layers[index]
        try:
            base_top = keras.Model(layer.output, base.output, name="base_top")
        except ValueError:
            continue  # the rest of the network needs more than this one tensor
        return _assemble(model, base, keras.Model(base.input, layer.output), base_top, layer.name)
    return None


def top_up_to(cut: NetworkCut, name: str) -> keras.Model:
    """The top of `cut` up to its layer `name` (e.g. head_pool): what turns the bottom's
    outputs into the outputs of a higher cut."""
    features = keras.Input(cut.top.input_shape[1:], name="features")
    x = features
    for layer in cut.top.layers[1:]:
        x = layer(x)
        if layer.name == name:
            return keras.Model(features, x, name=f"up_to_{name}")
    raise ValueError(f"no layer {name} above the cut at {cut.at}")


def _assemble(model, base, base_bottom, base_top, at: str) -> NetworkCut:
    """bottom: input -> layers before the base -> base_bottom; top: base_top -> layers after."""
    position = model.layers.index(base)
    inputs = keras.Input(model.input_shape[1:], name="image")
    x = inputs
    for layer in model.layers[1:position]:
        x = layer(x)
    bottom = keras.Model(inputs, base_bottom(x, training=False), name="frozen_bottom")
    features = keras.Input(base_bottom.output_shape[1:], name="features")
    y = base_top(features)
    for layer in model.layers[position + 1 :]:
        y = layer(y)
    top = keras.Model(features, y, name="trainable_top")
    return NetworkCut(bottom, top, at)
