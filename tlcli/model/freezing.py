"""Freezing the base for the frozen stage, and unfreezing its top for `unfreeze`.

Freezing follows the Keras transfer-learning guide (https://keras.io/guides/transfer_learning/):
the model is recompiled whenever `trainable` changes. One caveat the guide predates: in Keras 3 a
Functional model hands its own `training` flag to every layer it calls, overriding the
`training=False` recorded in the graph (keras/src/models/functional.py, `operation_fn`). What
keeps BatchNormalization in inference mode is therefore `trainable=False` on the BN layers,
which Keras 3 BN honours by normalising with its moving statistics: `unfreeze_top` leaves BN
layers frozen unless `train_bn` asks otherwise (tests/test_stages.py checks that the statistics
stay put).

>>> from tlcli.bases import build_base
>>> from tlcli.config import HeadConfig
>>> from tlcli.model.network import build_classifier
>>> base = build_base("resnet50", (32, 32), None)
>>> model = build_classifier(base, 2, HeadConfig(), "avg", "resnet50", base_training=False)
>>> trained = unfreeze_top(model, UnfreezeConfig(from_block="conv5"), "resnet50")
>>> trained[0], trained[-1], any(name.endswith("_bn") for name in trained)
('conv5_block1_1_conv', 'conv5_block3_3_conv', False)
"""

from __future__ import annotations

import keras

from tlcli.bases import BASES
from tlcli.config import UnfreezeConfig
from tlcli.errors import ConfigError
from tlcli.model.network import find_base


def freeze_base(model: keras.Model) -> None:
    find_base(model).trainable = False


def unfreeze_top(model: keras.Model, unfreeze: UnfreezeConfig, base_name: str) -> list[str]:
    """Make the top of the base trainable as configured; returns the names of the trained layers.

    BatchNormalization layers stay frozen unless `train_bn`, and a frozen BN layer normalises
    with its moving statistics (inference mode) whatever `training` fit() passes.
    """
    base = find_base(model)
    start = _first_trainable(base, unfreeze, base_name)
    base.trainable = True
    trained = []
    for index, layer in enumerate(base.layers):
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = index >= start and (unfreeze.train_bn or not is_bn)
        if layer.trainable and layer.weights:
            trained.append(layer.name)
    return trained


def _first_trainable(base: keras.Model, unfreeze: UnfreezeConfig, base_name: str) -> int:
    names = [layer.name for layer in base.layers]
    if unfreeze.layers == "all":
        return 0
    if isinstance(unfreeze.layers, int):
        return max(0, len(names) - unfreeze.layers)
    if unfreeze.from_layer is not None:
        if unfreeze.from_layer not in names:
            raise ConfigError(
                f"unfreeze.from_layer: no layer '{unfreeze.from_layer}' in {base_name}; "
                f"its top layers are: {', '.join(names[-6:])}"
            )
        return names.index(unfreeze.from_layer)
    block = unfreeze.from_block
    index = block_start(names, block)
    if index is None:
        blocks = BASES[base_name].blocks
        raise ConfigError(
            f"unfreeze.from_block: no block '{block}' in {base_name}; blocks: {', '.join(blocks)}"
        )
    return index


def block_start(names: list[str], block: str) -> int | None:
    """Index of the first layer of `block`: names like block5_conv1, conv5_block1_out, block6a_."""
    for index, name in enumerate(names):
        rest = name[len(block) :] if name.startswith(block) else None
        if rest is not None and (rest == "" or not rest[0].isdigit()):
            return index
    return None
