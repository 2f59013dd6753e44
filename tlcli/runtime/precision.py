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
re-applies the current policy to every layer, except the ones the caller names: tlcli keeps its
preprocessing layers and the softmax output in float32 (`tlcli.model.network.FLOAT32_LAYERS`),
for a numerically safe softmax and loss.

>>> import keras
>>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="hidden"),
...                           keras.layers.Dense(2, name="predictions", dtype="float32")])
>>> with dtype_policy("bfloat16"):
...     follow_policy(model, keep_float32=("predictions",))
>>> [layer.dtype_policy.name for layer in model.layers]
['mixed_bfloat16', 'float32']
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

POLICIES = {"none": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


def policy_name(setting: str) -> str:
    """The Keras policy for a `run.mixed_precision` setting.

    >>> policy_name("float16")
    'mixed_float16'
    """
    return POLICIES[setting]


@contextlib.contextmanager
def dtype_policy(setting: str) -> Iterator[str]:
    """Make `setting` the global Keras dtype policy inside the block; restore the old one after.

    >>> with dtype_policy("bfloat16") as name:
    ...     name
    'mixed_bfloat16'
    """
    import keras  # on call: the config and run reports import this module without TensorFlow

    previous = keras.config.dtype_policy()
    name = policy_name(setting)
    keras.config.set_dtype_policy(name)
    try:
        yield name
    finally:
        keras.config.set_dtype_policy(previous)


def follow_policy(model, keep_float32: tuple[str, ...] = ()) -> None:
    """Give `model` and every layer in it the global policy, except layers whose name starts
    with one of `keep_float32`.

    Only the compute dtype changes for a mixed policy: weights stay float32, so this is safe on a
    built (or loaded) model. Call it before `compile()`, which decides on loss scaling.
    """
    import keras  # on call: the config and run reports import this module without TensorFlow

    policy = keras.config.dtype_policy()
    model.dtype_policy = policy
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model):
            follow_policy(layer, keep_float32)
        elif not layer.name.startswith(keep_float32):
            layer.dtype_policy = policy
