"""The per-epoch backup file: the whole training state, and backups of older versions."""

from __future__ import annotations

import h5py
import keras
import numpy as np

from tlcli.train.training_state import RANDOM_STATES, load_state, save_state


def _trained_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dropout(0.5), keras.layers.Dense(2)]
    )
    model.compile("adam", "mse")
    model.fit(np.random.rand(16, 4), np.random.rand(16, 2), epochs=1, verbose=0)
    return model


def _state(model: keras.Model) -> list[np.ndarray]:
    return [np.array(v) for v in [*model.variables, *model.optimizer.variables]]


def test_backup_restores_weights_optimizer_and_random_states(tmp_path):
    model = _trained_model()
    saved = _state(model)
    save_state(model, tmp_path / "epoch-00001.weights.h5")
    model.fit(np.random.rand(16, 4), np.random.rand(16, 2), epochs=1, verbose=0)
    assert any((a != b).any() for a, b in zip(saved, _state(model), strict=True))
    load_state(model, tmp_path / "epoch-00001.weights.h5")
    for before, after in zip(saved, _state(model), strict=True):
        np.testing.assert_array_equal(before, after)


def test_a_backup_written_by_save_weights_still_loads(tmp_path):
    """Backups of tlcli before the one-go format: Keras' save_weights plus random states."""
    model = _trained_model()
    saved = _state(model)
    path = tmp_path / "epoch-00001.weights.h5"
    model.save_weights(path)
    weights = {id(w) for w in model.weights}
    states = [np.array(v) for v in model.variables if id(v) not in weights]
    with h5py.File(path, "a") as backup:
        backup.create_dataset(RANDOM_STATES, data=np.stack(states))
    model.fit(np.random.rand(16, 4), np.random.rand(16, 2), epochs=1, verbose=0)
    load_state(model, path)
    for before, after in zip(saved, _state(model), strict=True):
        np.testing.assert_array_equal(before, after)
