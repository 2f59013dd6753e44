"""TensorFlow, started only when a stage needs it, and the context every model is built in.

`import_tensorflow` keeps TensorFlow's start-up chatter (oneDNN, CUDA probing, absl notices) out
of the user's terminal: the C++ side writes it to file descriptor 2 before any log setting can
apply, so it is captured while TensorFlow loads and shown only if loading fails (or when
TLCLI_TF_LOGS=1). `model_scope` is where a tf.distribute strategy and a mixed-precision policy
wrap model building.

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

from tlcli.config import RunConfig

_imported = False


def import_tensorflow():
    """Import TensorFlow (and Keras) once, quietly."""
    global _imported
    if not _imported:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        if os.environ.get("TLCLI_TF_LOGS") == "1":
            import tensorflow as tf
        else:
            with _captured_stderr():
                import tensorflow as tf

                tf.config.list_physical_devices()  # probe devices now, while quiet
                import keras  # noqa: F401
        tf.get_logger().setLevel("ERROR")
        _imported = True
    import tensorflow as tf

    return tf


@contextlib.contextmanager
def _captured_stderr() -> Iterator[None]:
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
    """Build and compile models inside this: the place for distribution and precision policy."""
    yield


def is_chief() -> bool:
    """Whether this process writes the run's artefacts (always, without multi-worker training)."""
    return True
