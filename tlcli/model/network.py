"""Building the network tlcli trains: raw RGB pixels in, class probabilities out.

    image (0..255 RGB) -> preprocessing -> base -> pooling -> dropout
        -> [dense -> dropout]* -> softmax

Preprocessing is built from plain Keras layers, so a saved model.keras loads anywhere without
tlcli's code. (Loading a trained model for predictions is `tlcli.serve.predictor`.)

>>> from tlcli.bases import build_base
>>> base = build_base("vgg16", (32, 32), None)
>>> model = build_classifier(base, 3, HeadConfig(dense=[16]), "avg", "vgg16", base_training=False)
>>> [layer.name for layer in model.layers][1:4], model.output_shape
(['preprocess', 'vgg16', 'head_pool'], (None, 3))
>>> find_base(model) is base
True
"""

from __future__ import annotations

import keras
import numpy as np

from tlcli.bases import BASES, BaseSpec
from tlcli.config import HeadConfig
from tlcli.errors import ConfigError

# Layers built in float32 under any mixed-precision policy, by name prefix: the preprocessing
# (exact pixel arithmetic) and the softmax output (a numerically safe loss).
FLOAT32_LAYERS = ("preprocess", "predictions")
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)


def preprocessing_layers(spec: BaseSpec) -> list[keras.layers.Layer]:
    """The base's `preprocess_input`, as serialisable float32 layers."""
    if spec.preprocessing == "tf":
        return [keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess", dtype="float32")]
    if spec.preprocessing == "torch":
        return [
            keras.layers.Rescaling(1 / 255.0, name="preprocess_scale", dtype="float32"),
            keras.layers.Normalization(
                mean=IMAGENET_MEAN_RGB,
                variance=np.square(IMAGENET_STD_RGB),
                name="preprocess",
                dtype="float32",
            ),
        ]
    if spec.preprocessing == "caffe":
        # RGB -> BGR and mean subtraction as one fixed 1x1 convolution: exact (weights are 0 and
        # 1), and unlike a Lambda layer it needs no Python code to load.
        kernel = np.zeros((1, 1, 3, 3), dtype=np.float32)
        for channel in range(3):
            kernel[0, 0, 2 - channel, channel] = 1.0
        bias = -np.asarray(IMAGENET_MEAN_BGR, dtype=np.float32)
        conv = keras.layers.Conv2D(3, 1, name="preprocess", trainable=False, dtype="float32")
        conv.build((None, None, None, 3))
        conv.set_weights([kernel, bias])
        return [conv]
    return []


def head_layers(num_classes: int, head: HeadConfig, pooling: str) -> list[keras.layers.Layer]:
    """pooling -> dropout -> [dense -> dropout]* -> softmax; the softmax stays float32."""
    pool = {
        "avg": keras.layers.GlobalAveragePooling2D(name="head_pool"),
        "max": keras.layers.GlobalMaxPooling2D(name="head_pool"),
        "flatten": keras.layers.Flatten(name="head_pool"),
    }[pooling]
    layers: list[keras.layers.Layer] = [pool]
    for index, units in enumerate([*head.dense, None]):
        if head.dropout:
            layers.append(keras.layers.Dropout(head.dropout, name=f"head_dropout_{index}"))
        if units is not None:
            layers.append(
                keras.layers.Dense(units, activation=head.activation, name=f"head_dense_{index}")
            )
    layers.append(
        keras.layers.Dense(num_classes, activation="softmax", name="predictions", dtype="float32")
    )
    return layers


def assemble(
    layers: list[keras.layers.Layer],
    image_size: tuple[int, int],
    *,
    base_training: bool | None,
    name: str = "classifier",
) -> keras.Model:
    """Chain layers into a functional model; the base gets `training=base_training`.

    `False` keeps the base in inference mode whatever fit() asks (frozen-base stages); `None`
    lets it follow fit() (pretraining, or `unfreeze.train_bn: true`).
    """
    inputs = keras.Input((*image_size, 3), name="image")
    x = inputs
    for layer in layers:
        x = layer(x, training=base_training) if isinstance(layer, keras.Model) else layer(x)
    return keras.Model(inputs, x, name=name)


def build_classifier(
    base: keras.Model,
    num_classes: int,
    head: HeadConfig,
    pooling: str,
    base_name: str,
    *,
    base_training: bool | None,
) -> keras.Model:
    image_size = tuple(base.input_shape[1:3])
    layers = [
        *preprocessing_layers(BASES[base_name]),
        base,
        *head_layers(num_classes, head, pooling),
    ]
    return assemble(layers, image_size, base_training=base_training)


def rebuild(model: keras.Model, *, base_training: bool | None) -> keras.Model:
    """The same layers (and weights) chained again with another base training mode."""
    return assemble(model.layers[1:], tuple(model.input_shape[1:3]), base_training=base_training)


def find_base(model: keras.Model) -> keras.Model:
    """The base network inside a classifier: its one nested model."""
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(nested) != 1:
        raise ConfigError(f"{model.name}: expected one base network inside, found {len(nested)}")
    return nested[0]


def copy_hidden_head(source: keras.Model, target: keras.Model) -> int:
    """Adaptive transfer: copy the hidden dense layers of `source`'s head into `target`'s."""
    copied = 0
    for layer in target.layers:
        if layer.name.startswith("head_dense_"):
            layer.set_weights(source.get_layer(layer.name).get_weights())
            copied += 1
    return copied
