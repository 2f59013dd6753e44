"""Mixed precision: the Keras dtype policy a stage builds its model under, and what a loaded
model needs to follow it.

`run.mixed_precision` names a Keras policy ("none" is float32). Layers take the global policy
when they are created, so `dtype_policy` must be active while a model is built or loaded, and is
put back afterwards: stages are plain functions that may run one after another in one process.
Keras does the rest (https://keras.io/api/mixed_precision/): layers compute in float16/bfloat16
and keep float32 weights, and `compile()` wraps the optimizer in a LossScaleOptimizer when the
model's policy is mixed_float16 (keras/src/trainers/trainer.py, `auto_scale_loss`).

One gap: a saved model.keras records each layer's policy, and `load_model` restores it whatever
the global policy, so a model saved under one setting keeps it in the next stage. `follow_policy`
re-applies the current policy to every layer, except the ones tlcli keeps in float32: the
preprocessing layers and the softmax output (see model.py), for a numerically safe softmax and
loss.

>>> with dtype_policy("bfloat16"):  # doctest: +SKIP
...     model = keras.models.load_model("runs/demo/finetune/model.keras")
...     follow_policy(model)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

POLICIES = {"none": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}

# Layers model.py builds with dtype="float32" on purpose; they keep it under any policy.
FLOAT32_LAYER_PREFIXES = ("preprocess", "predictions")


def policy_name(setting: str) -> str:
    """The Keras policy for a `run.mixed_precision` setting.

    >>> policy_name("float16")
    'mixed_float16'
    """
    return POLICIES[setting]


@contextlib.contextmanager
def dtype_policy(setting: str) -> Iterator[str]:
    """Make `setting` the global Keras dtype policy inside the block; restore the old one after.

    >>> with dtype_policy("bfloat16") as name:  # doctest: +SKIP
    ...     name
    'mixed_bfloat16'
    """
    import keras

    previous = keras.config.dtype_policy()
    name = policy_name(setting)
    keras.config.set_dtype_policy(name)
    try:
        yield name
    finally:
        keras.config.set_dtype_policy(previous)


def follow_policy(model) -> None:
    """Give `model` and every layer in it the global policy, except the float32 layers.

    Only the compute dtype changes for a mixed policy: weights stay float32, so this is safe on a
    built (or loaded) model. Call it before `compile()`, which decides on loss scaling.

    >>> follow_policy(keras.models.load_model("model.keras"))  # doctest: +SKIP
    """
    import keras

    policy = keras.config.dtype_policy()
    model.dtype_policy = policy
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model):
            follow_policy(layer)
        elif not layer.name.startswith(FLOAT32_LAYER_PREFIXES):
            layer.dtype_policy = policy
