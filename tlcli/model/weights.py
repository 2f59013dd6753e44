"""Build a base network with the weights the config asks for.

`imagenet` goes through Keras' own download and cache (`$KERAS_HOME/models`, default
`~/.keras/models`); `none` is random initialisation; a path is either a weights file Keras can
load into the application (`.h5`, `.weights.h5`) or a saved tlcli model (`model.keras`, or a run
or stage folder holding one), whose base is copied.

>>> import tempfile
>>> saved = build_base_with_weights("vgg16", (32, 32), "none")
>>> path = Path(tempfile.mkdtemp()) / "vgg16.weights.h5"
>>> saved.save_weights(path)
>>> loaded = build_base_with_weights("vgg16", (64, 64), str(path))  # any input size
>>> all((a == b).all() for a, b in zip(saved.get_weights(), loaded.get_weights()))
True
>>> build_base_with_weights("resnet50", (32, 32), str(path))
Traceback (most recent call last):
...
tlcli.errors.ConfigError: model.weights: .../vgg16.weights.h5 does not fit resnet50: ...
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import keras

from tlcli.bases import build_base
from tlcli.errors import ConfigError, RunError
from tlcli.model.network import find_base
from tlcli.rundir import MODEL_FILE, RunDir


def build_base_with_weights(
    base_name: str, image_size: tuple[int, int], weights: str, *, key: str = "model.weights"
):
    """The headless base `base_name` at `image_size`, initialised from `weights`."""
    if weights == "none":
        return build_base(base_name, image_size, None)
    if weights == "imagenet":
        return _imagenet_base(base_name, image_size)
    path = Path(weights)
    if path.is_dir() or path.suffix == ".keras":
        base = build_base(base_name, image_size, None)
        copy_base_weights(find_saved_model(path), base, base_name, key=key)
        return base
    # A file of another architecture sometimes loads with only warnings that some layers "retain
    # their freshly-initialized weights": a half-random base is never what the user asked for.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            base = build_base(base_name, image_size, str(path))
        except (ValueError, OSError, KeyError) as exc:
            raise ConfigError(
                f"{key}: {path} does not fit {base_name}: {_first_line(exc)}"
            ) from None
    skipped = [str(w.message) for w in caught if "freshly-initialized" in str(w.message)]
    if skipped:
        raise ConfigError(f"{key}: {path} does not fit {base_name}: {_first_line(skipped[0])}")
    return base


# Inside `shared_frozen_bases()`: the bases built so far, by what they were built from.
_shared_bases: dict[tuple, tuple[keras.Model, object]] | None = None


@contextlib.contextmanager
def shared_frozen_bases() -> Iterator[None]:
    """Inside the block, `build_frozen_base` builds a base once per set of arguments.

    For callers that train many heads on one frozen base in one process (a sweep's trials):
    building MobileNetV2 takes seconds, training a head on cached features less. Outside the
    block every call builds a new base.
    """
    global _shared_bases
    outer, _shared_bases = _shared_bases, {} if _shared_bases is None else _shared_bases
    try:
        yield
    finally:
        _shared_bases = outer


def build_frozen_base(base_name: str, image_size: tuple[int, int], weights: str):
    """`build_base_with_weights` for a base its caller freezes and never trains: inside
    `shared_frozen_bases()`, a base built earlier from the same arguments (and the same weights
    file, dtype policy and tf.distribute strategy) is returned again.

    Building draws seeds for the base's initializers from Python's `random`; a reused base
    leaves `random` as the build left it, so the head that follows gets the same initial
    weights either way (a sweep's trial and `tlcli run` of its config train the same model).
    """
    if _shared_bases is None:
        return build_base_with_weights(base_name, image_size, weights)
    import random

    import tensorflow as tf

    path = Path(weights)
    stamp = path.stat().st_mtime_ns if weights not in ("none", "imagenet") else None
    key = (
        base_name,
        tuple(image_size),
        weights,
        stamp,
        keras.config.dtype_policy().name,
        id(tf.distribute.get_strategy()),
        hash(random.getstate()),
    )
    if weights == "none" or key not in _shared_bases:
        # Random weights differ with every build (and the seed): never shared.
        base = build_base_with_weights(base_name, image_size, weights)
        if weights == "none":
            return base
        _shared_bases[key] = (base, random.getstate())
    base, random_after_build = _shared_bases[key]
    random.setstate(random_after_build)
    return base


def find_saved_model(path: Path) -> Path:
    """A model.keras file, given the file itself, a stage folder or a run folder."""
    if path.is_file():
        return path
    for candidate in (path / MODEL_FILE, RunDir(path).model_path("pretrain")):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"{path}: no model.keras here (nor in {path / 'pretrain'})")


def copy_base_weights(model_path: Path, base, base_name: str, *, key: str) -> None:
    """Copy the base inside a saved classifier into `base` (same architecture, any input size)."""
    try:
        saved = keras.models.load_model(model_path, compile=False)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"{key}: cannot load {model_path}: {_first_line(exc)}") from None
    source = find_base(saved)
    try:
        base.set_weights(source.get_weights())
    except ValueError as exc:
        raise ConfigError(
            f"{key}: the base in {model_path} ({source.name}) does not fit {base_name}: "
            f"{_first_line(exc)}"
        ) from None


def _imagenet_base(base_name: str, image_size: tuple[int, int]):
    try:
        return build_base(base_name, image_size, "imagenet")
    except Exception as exc:  # Keras' get_file raises a bare Exception on a failed download
        url = re.search(r"https?://\S+?(?=[:\s]|$)", str(exc))
        if url is None:
            raise
        file_name = url.group(0).rsplit("/", 1)[-1]
        cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
        raise RunError(
            f"could not download the ImageNet weights for {base_name} ({_first_line(exc)}). "
            f"Without network: fetch {url.group(0)} elsewhere and copy it to {cache / file_name} "
            "(Keras' cache, which honours KERAS_HOME), or set model.weights to the file's path."
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
