"""A training model's whole state in one HDF5 file, written in one go: the per-epoch backup.

Every variable of the model (weights, BatchNorm statistics, random generator states) and of its
optimizer goes to disk, those of one dtype as one flat dataset, since Keras' `save_weights`
writes one dataset per variable, a cost per epoch plain Keras does not pay
(docs/notes-from-code.md). Loading assigns them back in the same order, after checking that
every shape and dtype matches (the same model, built the same way).

>>> import tempfile
>>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
>>> model.compile("adam", "mse")
>>> path = Path(tempfile.mkdtemp()) / "epoch-00001.weights.h5"
>>> save_state(model, path)
>>> kernel = model.layers[0].kernel.numpy().copy()
>>> _ = model.layers[0].kernel.assign(np.zeros((3, 2)))
>>> load_state(model, path)
>>> bool((model.layers[0].kernel.numpy() == kernel).all())
True
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import keras
import numpy as np

STATE_GROUP = "tlcli_state"


def state_variables(model: keras.Model) -> list:
    """Everything training changes: the model's variables (weights, BatchNorm statistics,
    random generator states), then its optimizer's (step count, moments, loss scale)."""
    optimizer = model.optimizer.variables if model.optimizer is not None else []
    return [*model.variables, *optimizer]


def save_state(model: keras.Model, path: Path) -> None:
    """Write the training state of `model` to `path` (an HDF5 file)."""
    _build_optimizer(model)
    arrays = [np.asarray(keras.ops.convert_to_numpy(v)) for v in state_variables(model)]
    layout = [[array.dtype.str, list(array.shape)] for array in arrays]
    with h5py.File(path, "w") as file:
        group = file.create_group(STATE_GROUP)
        group.attrs["layout"] = json.dumps(layout)
        for dtype in sorted({array.dtype.str for array in arrays}):
            flat = [array.ravel() for array in arrays if array.dtype.str == dtype]
            group.create_dataset(dtype, data=np.concatenate(flat))


def load_state(model: keras.Model, path: Path) -> None:
    """Assign the state saved in `path` to `model` (compiled, as when it was saved)."""
    _build_optimizer(model)
    with h5py.File(path, "r") as file:
        group = file.get(STATE_GROUP)
        if group is None:
            raise ValueError(f"{path}: not a training-state backup (no {STATE_GROUP} group)")
        layout = json.loads(group.attrs["layout"])
        flat = {dtype: group[dtype][()] for dtype in group}
    variables = state_variables(model)
    expected = [[np.dtype(v.dtype).str, list(v.shape)] for v in variables]
    if expected != layout:
        raise ValueError(f"{path}: a backup of another model (variables differ)")
    offsets = dict.fromkeys(flat, 0)
    for variable, (dtype, shape) in zip(variables, layout, strict=True):
        size = int(np.prod(shape))
        start = offsets[dtype]
        variable.assign(flat[dtype][start : start + size].reshape(shape))
        offsets[dtype] = start + size


def _build_optimizer(model: keras.Model) -> None:
    """Create the optimizer's variables, as its first step does, so that they can be saved or
    restored; under tf.distribute they must be created in scope."""
    if model.optimizer is not None and not model.optimizer.built:
        with model.distribute_strategy.scope():
            model.optimizer.build(model.trainable_variables)
