"""TensorFlow, started only when a stage needs it, quietly, and seeded.

`import_tensorflow` keeps TensorFlow's start-up chatter (oneDNN, CUDA probing, absl notices) out
of the user's terminal: the C++ side writes it to file descriptor 2 before any log setting can
apply, so it is captured while TensorFlow loads and shown only if loading fails (or when
TLCLI_TF_LOGS=1). What its ops log later, at run time (oneDNN's notice that a dtype needs
AVX-512, at error level), `quiet_tensorflow_logs` keeps out: TensorFlow reads its C++ log level
once, as it loads, so every command sets it before anything can import TensorFlow.

TLCLI_CPU_DEVICES=N splits the CPU into N logical devices as TensorFlow starts (it must happen
before TensorFlow initialises its devices), so that `run.distribution: mirrored` can train with
N replicas on a machine without GPUs: a correctness check for multi-device code, not a speed-up.

>>> tf = import_tensorflow()
>>> tf.__name__, import_tensorflow() is tf
('tensorflow', True)
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator

from tlcli.errors import ConfigError, RunError

_imported = False


def quiet_tensorflow_logs() -> None:
    """TensorFlow's C++ logs off (fatal errors only) for this process and its children, unless
    TLCLI_TF_LOGS=1 or TF_CPP_MIN_LOG_LEVEL says otherwise; in time only before TensorFlow
    loads. Its errors that matter reach Python as exceptions."""
    if os.environ.get("TLCLI_TF_LOGS") != "1":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def import_tensorflow():
    """Import TensorFlow (and Keras) once, quietly; apply TLCLI_CPU_DEVICES."""
    global _imported
    if not _imported:
        quiet_tensorflow_logs()
        if os.environ.get("TLCLI_TF_LOGS") == "1":
            # the one place TensorFlow starts (quietly): every TF-free path imports this module
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
    import keras  # on call: every TF-free path imports this module

    keras.utils.set_random_seed(seed)
