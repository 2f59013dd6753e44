"""lr-find's rules on synthetic range-test curves (tlcli.experiments.lr_suggest), and the
recorder's per-batch losses."""

from __future__ import annotations

import numpy as np
import pytest

from tlcli.experiments.lr_suggest import suggest

pytestmark = pytest.mark.fast  # the edit loop's tier (tests/conftest.py)

RATES = np.geomspace(1e-7, 1, 100)  # lr-find's default range and steps
DECADE = np.log10(RATES)


def _noisy(curve: np.ndarray, noise: float, seed: int) -> np.ndarray:
    """A range test's losses: batch to batch noise on `curve`, which stops (diverged) where
    the curve exceeds four times its minimum after it."""
    lowest = int(np.argmin(curve))
    beyond = np.flatnonzero(curve[lowest:] > 4 * curve[lowest])
    end = lowest + int(beyond[0]) if len(beyond) else len(curve)
    losses = curve[:end] + np.random.default_rng(seed).normal(0, noise, end)
    return np.abs(losses)


def _head_curve(middle: float) -> np.ndarray:
    """A new head's loss: flat at ln(10) while the rate is too low to move it, a descent
    centred on `middle` (a decade wide), then a climb once the rate is too high."""
    descent = 1.8 / (1 + np.exp(-4.4 * (DECADE - np.log10(middle))))
    climb = np.maximum(0, DECADE - np.log10(middle) - 1.2) ** 2 * 6
    return 2.3 - descent + climb


@pytest.mark.parametrize("seed", range(20))
def test_descent_lands_in_the_steep_descent_not_in_the_noise_of_a_flat_start(seed):
    losses = _noisy(_head_curve(middle=1e-2), noise=0.3, seed=seed)
    rate = suggest(RATES[: len(losses)], losses, "descent").rate
    # the middle of the descent, within a third of a decade
    assert 10**-2.34 <= rate <= 10**-1.66, rate


@pytest.mark.parametrize("seed", range(10))
def test_a_loss_that_does_not_fall_gets_the_rate_where_it_starts_to_climb(seed):
    # unfreezing a trained model: flat (noisy), then wrecked from 1e-4 up
    curve = 0.25 + np.maximum(0, DECADE + 4) ** 2 * 2
    losses = _noisy(curve, noise=0.1, seed=seed)
    found = suggest(RATES[: len(losses)], losses, "descent")
    assert 10**-4.3 <= found.rate <= 10**-3.6, found
    assert "climb" in found.why


def test_a_flat_curve_says_so():
    found = suggest(RATES, _noisy(np.full(100, 0.7), 0.05, seed=0), "descent")
    assert found.rate == 1e-7 and "neither fell nor climbed" in found.why


def test_minimum_is_a_tenth_of_the_lowest_losss_rate():
    found = suggest(RATES, 1 + (DECADE + 2) ** 2, "minimum")  # lowest at 1e-2
    assert found.rate == pytest.approx(1e-3, rel=0.1) and "lowest smoothed loss" in found.why


def test_the_recorder_keeps_each_batchs_own_loss_when_batches_differ_in_size():
    """Keras logs the epoch's running mean weighted by batch size: batches of 4, 4 and 3."""
    import keras
    import tensorflow as tf

    from tlcli.experiments.lr_find import _Recorder

    x = np.random.default_rng(0).normal(size=(11, 4)).astype("float32")
    y = np.eye(2, dtype="float32")[np.arange(11) % 2]
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(keras.optimizers.SGD(0.0), "categorical_crossentropy")
    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(4).repeat(3)
    recorder = _Recorder(start=0.0, growth=1.0)  # rate 0: the weights, and each loss, stay
    model.fit(batches, steps_per_epoch=9, epochs=1, shuffle=False, callbacks=[recorder], verbose=0)
    expected = [
        float(keras.losses.categorical_crossentropy(by, model(bx)).numpy().mean())
        for bx, by in batches.take(9)
    ]
    assert recorder.losses == pytest.approx(expected, rel=1e-4)
