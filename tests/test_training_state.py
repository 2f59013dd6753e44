"""The per-epoch backup file: the whole training state, and nothing else loads as one."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tlcli.train.training_state import load_state, save_state


def _trained_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dropout(0.5), keras.layers.Dense(2)]
    )
    model.compile("adam", "mse")
    model.fit(np.random.rand(16, 4), np.random.rand(16, 2), epochs=1, verbose=0)
    return model


def _state(model: keras.Model) -> list[np.ndarray]:
    return [keras.ops.convert_to_numpy(v) for v in [*model.variables, *model.optimizer.variables]]


def test_backup_restores_weights_optimizer_and_random_states(tmp_path):
    model = _trained_model()
    saved = _state(model)
    save_state(model, tmp_path / "epoch-00001.weights.h5")
    model.fit(np.random.rand(16, 4), np.random.rand(16, 2), epochs=1, verbose=0)
    assert any((a != b).any() for a, b in zip(saved, _state(model), strict=True))
    load_state(model, tmp_path / "epoch-00001.weights.h5")
    for before, after in zip(saved, _state(model), strict=True):
        np.testing.assert_array_equal(before, after)


def test_a_file_of_another_format_is_refused_by_name(tmp_path):
    """A Keras weights file is no backup: loading it says so, and changes nothing."""
    model = _trained_model()
    saved = _state(model)
    path = tmp_path / "epoch-00001.weights.h5"
    model.save_weights(path)
    with pytest.raises(ValueError, match="not a training-state backup"):
        load_state(model, path)
    for before, after in zip(saved, _state(model), strict=True):
        np.testing.assert_array_equal(before, after)
