"""The context every model is built, loaded and compiled in, and how it will run.

`model_scope` is the run's tf.distribute strategy scope (tlcli.runtime.distribute) and Keras
dtype policy (tlcli.runtime.precision), both put back on exit.

>>> from tlcli.config import RunConfig
>>> with model_scope(RunConfig(mixed_precision="bfloat16")):
...     import keras
...     keras.config.dtype_policy().name
'mixed_bfloat16'
>>> keras.config.dtype_policy().name
'float32'
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from tlcli.config import RunConfig
from tlcli.runtime.distribute import describe, start_distribution
from tlcli.runtime.precision import dtype_policy, policy_name
from tlcli.runtime.startup import import_tensorflow


@contextlib.contextmanager
def model_scope(run: RunConfig) -> Iterator[None]:
    """Build, load and compile models inside this: the run's strategy scope and dtype policy.

    The strategy is created on first use (stages create it earlier, when they start, because a
    multi-worker strategy must come before any other TensorFlow work); the dtype policy is
    restored on exit. A model loaded from a file to train on must go through `follow_policy`
    (the unfreeze stage does it).
    """
    import_tensorflow()
    strategy = start_distribution(run)
    with strategy.scope(), dtype_policy(run.mixed_precision):
        yield


def describe_runtime(run: RunConfig, model: Any) -> dict[str, Any]:
    """How a compiled model trains: strategy, replicas, workers, dtype policy, loss scaling, XLA.

    >>> describe_runtime(RunConfig(), model=None)
    {'strategy': 'default', 'replicas': 1, 'workers': 1, 'precision_policy': 'float32', \
'loss_scaling': False, 'jit_compile': False}
    """
    optimizer = getattr(model, "optimizer", None)
    return {
        **describe(),
        "precision_policy": policy_name(run.mixed_precision),
        "loss_scaling": type(optimizer).__name__ == "LossScaleOptimizer",
        "jit_compile": bool(getattr(model, "jit_compile", False)),
    }


def runtime_line(summary: dict[str, Any]) -> str:
    """One console line from `describe_runtime`.

    >>> runtime_line({"strategy": "MirroredStrategy", "replicas": 2, "workers": 1,
    ...               "precision_policy": "float32", "loss_scaling": False, "jit_compile": False})
    'runtime: MirroredStrategy, 2 replicas · float32 · XLA off'
    """
    workers = f" on {summary['workers']} workers" if summary["workers"] > 1 else ""
    replicas = f"{summary['replicas']} replica{'s' if summary['replicas'] != 1 else ''}"
    precision = summary["precision_policy"] + (" (loss scaling)" if summary["loss_scaling"] else "")
    xla = "XLA on" if summary["jit_compile"] else "XLA off"
    return f"runtime: {summary['strategy']}, {replicas}{workers} · {precision} · {xla}"
