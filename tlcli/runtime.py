"""TensorFlow, started only when a stage needs it, and the context every model is built in.

`import_tensorflow` keeps TensorFlow's start-up chatter (oneDNN, CUDA probing, absl notices) out
of the user's terminal: the C++ side writes it to file descriptor 2 before any log setting can
apply, so it is captured while TensorFlow loads and shown only if loading fails (or when
TLCLI_TF_LOGS=1).

TLCLI_CPU_DEVICES=N splits the CPU into N logical devices as TensorFlow starts (it must happen
before TensorFlow initialises its devices), so that `run.distribution: mirrored` can train with
N replicas on a machine without GPUs: a correctness check for multi-device code, not a speed-up.

`model_scope` is where a stage builds, loads and compiles its models: inside the run's
tf.distribute strategy (distribute.py) and Keras dtype policy (precision.py), both put back on
exit. `is_chief` says whether this process writes the run's files (distribute.py).

>>> tf = import_tensorflow()  # doctest: +SKIP
>>> with model_scope(cfg.run):  # doctest: +SKIP
...     model = build_classifier(...)
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

from tlcli.config import RunConfig
from tlcli.distribute import (
    describe,
    is_chief,
    is_multi_worker,
    same_on_all_workers,
    start_distribution,
    wait_for_workers,
    write_path,
)
from tlcli.errors import ConfigError, RunError
from tlcli.precision import dtype_policy, follow_policy, policy_name

_imported = False


def import_tensorflow():
    """Import TensorFlow (and Keras) once, quietly; apply TLCLI_CPU_DEVICES."""
    global _imported
    if not _imported:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        if os.environ.get("TLCLI_TF_LOGS") == "1":
            import tensorflow as tf
        else:
            with quiet_stderr():
                import tensorflow as tf

                tf.config.list_physical_devices()  # probe devices now, while quiet
                import keras  # noqa: F401
        _split_cpu(tf)  # still in time: listing physical devices does not initialise them
        tf.get_logger().setLevel("ERROR")
        _imported = True
    import tensorflow as tf

    return tf


def _split_cpu(tf) -> None:
    """TLCLI_CPU_DEVICES=N: N logical CPU devices, for multi-replica runs without GPUs."""
    text = os.environ.get("TLCLI_CPU_DEVICES", "").strip()
    if not text:
        return
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"TLCLI_CPU_DEVICES={text}: expected a number of devices, e.g. 2")
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * int(text)
        )
    except RuntimeError as exc:  # devices were initialised before tlcli imported TensorFlow
        raise RunError(f"TLCLI_CPU_DEVICES must be set before TensorFlow starts: {exc}") from None


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Send fd 2 to a temporary file; replay it if the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            capture.seek(0)
            sys.stderr.write(capture.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def set_seed(seed: int) -> None:
    """Python, NumPy and TensorFlow random state, as Keras recommends."""
    import keras

    keras.utils.set_random_seed(seed)


@contextlib.contextmanager
def model_scope(run: RunConfig) -> Iterator[None]:
    """Build, load and compile models inside this: the run's strategy scope and dtype policy.

    The strategy is created on first use (stages create it earlier, in `_prepare`, because a
    multi-worker strategy must come before any other TensorFlow work); the dtype policy is
    restored on exit. A model loaded from a file to train on must go through `follow_policy`
    (stages.unfreeze does it).

    >>> with model_scope(RunConfig(mixed_precision="bfloat16")):  # doctest: +SKIP
    ...     model = build_classifier(base, 3, HeadConfig(), "avg", "vgg16", base_training=False)
    """
    import_tensorflow()
    strategy = start_distribution(run)
    with strategy.scope(), dtype_policy(run.mixed_precision):
        yield


def describe_runtime(run: RunConfig, model: Any) -> dict[str, Any]:
    """How a compiled model trains: strategy, replicas, workers, dtype policy, loss scaling, XLA.

    >>> describe_runtime(cfg.run, model)  # doctest: +SKIP
    {'strategy': 'MirroredStrategy', 'replicas': 2, 'workers': 1, 'precision_policy': ...}
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


__all__ = [
    "describe_runtime",
    "follow_policy",
    "import_tensorflow",
    "is_chief",
    "is_multi_worker",
    "model_scope",
    "runtime_line",
    "same_on_all_workers",
    "set_seed",
    "start_distribution",
    "wait_for_workers",
    "write_path",
]
