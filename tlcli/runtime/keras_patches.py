"""Guarded patches of Keras internals: two fixes that let Keras 3's `fit()` run under
tf.distribute.MultiWorkerMirroredStrategy.

Keras 3 with the TensorFlow backend supports MirroredStrategy, but its multi-worker path is
broken (https://github.com/keras-team/keras/issues/20585,
https://github.com/tensorflow/tensorflow/issues/72388); checked against keras 3.15,
keras/src/backend/tensorflow/trainer.py:

1. `_maybe_symbolic_build` averages the first distributed batch with
   `strategy.reduce("MEAN", (x, y))`; a nested value is a TODO in tf.distribute, and with more
   than one worker the call fails ("Attempt to convert a value (PerReplica...)"). It only needs
   the batch for its shapes, so the fix hands it this worker's own part of the batch.
2. Every train and test step reduces its logs with `reduce_per_replica(..., "auto")`, which for
   multi-worker becomes `strategy.reduce("MEAN", v, axis=0)`; the logs are scalars, so it fails
   ("Invalid reduction dimension 0"). The fix averages scalars across replicas (axis=None).

Epoch logs (history.csv, EarlyStopping) are unaffected: Keras recomputes them at the end of each
epoch from the metric variables, which sum over every replica of every worker.

Both fixes replace a function of Keras' private TensorFlow trainer and act only when the
strategy is multi-worker; `install_multi_worker_fixes()` is called once, when that strategy is
created. A Keras whose trainer lacks what the fixes replace is refused with one RunError line,
not an AttributeError deep inside training:

>>> missing_private_names()
[]
"""

from __future__ import annotations

import importlib

from tlcli.errors import RunError

# What the fixes use, as (module, attribute path): checked before anything is patched.
PRIVATE_NAMES = (
    ("keras.src.tree", "map_structure"),
    ("keras.src.backend.tensorflow.trainer", "reduce_per_replica"),
    ("keras.src.backend.tensorflow.trainer", "_collective_all_reduce_multi_worker"),
    ("keras.src.backend.tensorflow.trainer", "TensorFlowTrainer._maybe_symbolic_build"),
    ("keras.src.backend.tensorflow.trainer", "TensorFlowTrainer._symbolic_build"),
)
TESTED_WITH = "Keras 3.15"

_installed = False


def missing_private_names() -> list[str]:
    """The Keras internals the fixes need that this Keras does not have."""
    missing = []
    for module_name, attribute in PRIVATE_NAMES:
        try:
            target = importlib.import_module(module_name)
            for part in attribute.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError):
            missing.append(f"{module_name}.{attribute}")
    return missing


def install_multi_worker_fixes() -> None:
    """Patch Keras' TensorFlow trainer for multi-worker training (idempotent)."""
    global _installed
    if _installed:
        return
    missing = missing_private_names()
    if missing:
        import keras  # on call: only multi-worker training patches Keras

        raise RunError(
            f"run.distribution: multi_worker needs Keras internals that Keras {keras.__version__} "
            f"lacks ({', '.join(missing)}); it was tested with {TESTED_WITH}: install that, or "
            "train on one machine"
        )
    # Keras' private modules on call: only multi-worker training patches them
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original_reduce = tf_trainer.reduce_per_replica
    original_build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build

    def is_multi_worker(strategy) -> bool:
        return strategy is not None and tf_trainer._collective_all_reduce_multi_worker(strategy)

    def local_part(strategy, value):
        return strategy.experimental_local_results(value)[0]

    def reduce_per_replica(values, strategy, reduction):
        if reduction != "auto" or not is_multi_worker(strategy):
            return original_reduce(values, strategy, reduction)

        def mean(value):
            axis = 0 if local_part(strategy, value).shape.rank else None
            return strategy.reduce("MEAN", value, axis=axis)

        return tree.map_structure(mean, values)

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is None or not is_multi_worker(strategy):
            return original_build(self, iterator=iterator, data_batch=data_batch)
        batch = None
        for _, _, batches in iterator:
            batch = next(batches)
            break
        if batch is None:  # no data: let Keras report it its own way
            return original_build(self, iterator=iterator, data_batch=data_batch)
        local = tree.map_structure(lambda value: local_part(strategy, value), batch)
        with strategy.scope():
            self._symbolic_build(data_batch=local)

    tf_trainer.reduce_per_replica = reduce_per_replica
    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    _installed = True
