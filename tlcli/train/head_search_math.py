"""Fit the finetune head on the cached features by search instead of by epochs of SGD.

With a frozen base and a one-layer head, finetune is softmax regression on the base's pooled
features. Cached, those features make a full-batch fit cost well under a second, so instead of
one guess (Adam at 1e-3 for `epochs`) the stage fits many heads and keeps the one that predicts
best on held-out folds:

- candidates: L2 strength (LAMBDAS) x mirrored images (off, or: train on each image and its
  mirror, predict the mean over both, which the saved model then does too, tlcli.model.tta);
- choice: k-fold cross-validation on train + validation together (a small validation split
  alone would choose by a few images), accuracy pooled over the folds; mirrors unless they
  score clearly worse (`_choose_mirror`), then the strongest L2 within one
  standard error of the best;
- final head: the chosen candidate fitted on the training split only, so validation still
  measures it honestly (and unfreeze's interpolation can choose on it);
- a baseline (the head as configured, trained for its epochs, tlcli.train.head_search_stage) can
  be scored on the same folds: when no candidate beats it, the stage keeps the plain head.

All candidates of one fold train at once as one batched problem (`fit_softmax`). Features are
standardised for the fit (better conditioned) and the scaling is folded into the Dense kernel
and bias, so the network is the usual `predictions` layer. No feature is scaled up by more than
1 / SCALE_FLOOR relative to the features' mean spread (`feature_scale`), so the folded kernel
holds no rows far larger than the rest, which quantized exports could not represent. What it
gains, and where its constants come from: docs/notes-from-code.md.

>>> rng = np.random.default_rng(0)
>>> x = np.concatenate([rng.normal(0, 1, (40, 8)), rng.normal(1.5, 1, (40, 8))]).astype("f4")
>>> y = np.repeat([0, 1], 40)
>>> choice = search(x, y, None, 2, folds=4, seed=0)
>>> accuracy = float((predict(choice, x, None).argmax(1) == y).mean())
>>> choice.mirror, choice.kernel.shape, accuracy > 0.9
(False, (8, 2), True)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from tlcli.train.head_search_conditions import FOLDS

# L2 strength on the standardised features, per example (the loss is the mean cross-entropy
# plus lambda/2 |W|^2): ten times either way of the optima measured on real data.
LAMBDAS = (10.0, 3.0, 1.0, 0.3, 0.1, 0.03, 0.01)
CV_ROWS_LIMIT = 6000  # above this, folds are drawn from a class-stratified sample
STEPS, RATE = 200, 0.05  # full-batch Adam with cosine decay, enough to converge
SCALE_FLOOR = 0.1  # the smallest standardisation divisor, as a share of the mean feature std


@dataclass
class HeadChoice:
    kernel: np.ndarray  # (features, classes), standardisation folded in
    bias: np.ndarray
    mirror: bool  # whether the head averages its predictions on the image and its mirror image
    lam: float
    cv_accuracy: float
    table: list[dict] = field(default_factory=list)  # every candidate's CV accuracy
    baseline_cv_accuracy: float | None = None  # the baseline's, on the same folds

    @property
    def best_cv_accuracy(self) -> float:
        """The best candidate's (the chosen one may trade a little for a simpler head)."""
        return max(row["cv_accuracy"] for row in self.table)

    @property
    def beats_baseline(self) -> bool:
        """Whether some candidate scored above the baseline (no baseline: True)."""
        if self.baseline_cv_accuracy is None:
            return True
        return self.best_cv_accuracy > self.baseline_cv_accuracy


# fit rows, held-out rows -> the baseline's class probabilities for the held-out rows
Baseline = Callable[[np.ndarray, np.ndarray], np.ndarray]


def search(
    x: np.ndarray,
    y: np.ndarray,
    x_mirror: np.ndarray | None,
    num_classes: int,
    *,
    train_rows: np.ndarray | None = None,
    sample_weight_of_class: np.ndarray | None = None,
    folds: int = FOLDS,
    seed: int = 0,
    baseline: Baseline | None = None,
) -> HeadChoice:
    """Choose (mirror, lambda) by k-fold CV on all rows, then fit it on `train_rows` (default:
    all). `x_mirror`: the features of the mirror images (None: no mirror candidates);
    `baseline`: what the candidates must beat, scored on the same folds."""
    rows = _cv_sample(y, seed)
    fold_of = _stratified_folds(y[rows], folds, seed)
    baseline_accuracy = None
    if baseline is not None:
        hits = 0
        for k in range(folds):
            fit_rows, held = rows[fold_of != k], rows[fold_of == k]
            hits += int((baseline(fit_rows, held).argmax(-1) == y[held]).sum())
        baseline_accuracy = round(hits / len(rows), 4)
    mirror_options = (False, True) if x_mirror is not None else (False,)
    table, best = [], {}
    for mirror in mirror_options:
        correct = np.zeros(len(LAMBDAS))
        for k in range(folds):
            fit_rows, held = rows[fold_of != k], rows[fold_of == k]
            model = _fit(x, x_mirror, y, fit_rows, num_classes, LAMBDAS, mirror,
                         sample_weight_of_class)  # fmt: skip
            probs = _probabilities(model, x[held], x_mirror[held] if mirror else None)
            correct += (probs.argmax(-1) == y[held][None]).sum(1)
        for lam, hits in zip(LAMBDAS, correct, strict=True):
            accuracy = float(hits / len(rows))
            table.append({"mirror": mirror, "lambda": lam, "cv_accuracy": round(accuracy, 4)})
        best[mirror] = _one_standard_error(LAMBDAS, correct / len(rows), len(rows))
    mirror = _choose_mirror(best, len(rows))
    accuracy, lam = best[mirror]
    final_rows = np.arange(len(y)) if train_rows is None else train_rows
    # Keep sklearn's convention: the loss weight of the data (C), not lambda, carries over
    # from the fold fits to the final fit on a different number of rows.
    fold_size = len(rows) * (folds - 1) / folds
    final_lam = lam * fold_size / len(final_rows)
    model = _fit(x, x_mirror, y, final_rows, num_classes, (final_lam,), mirror,
                 sample_weight_of_class)  # fmt: skip
    kernel, bias = _fold_standardisation(model)
    return HeadChoice(kernel, bias, mirror, lam, accuracy, table, baseline_accuracy)


def _one_standard_error(lambdas, accuracies, rows: int) -> tuple[float, float]:
    """(accuracy, lambda): the strongest L2 whose CV accuracy is within one standard error of
    the best (the "one-standard-error rule" of Hastie et al.: neighbours that tie within the
    folds' noise are told apart by the simpler model, not by that noise)."""
    top = float(np.max(accuracies))
    standard_error = (top * (1 - top) / rows) ** 0.5
    first = next(i for i, a in enumerate(accuracies) if a >= top - standard_error)
    return float(accuracies[first]), lambdas[first]


def _choose_mirror(best: dict[bool, tuple[float, float]], rows: int) -> bool:
    """Mirror images unless they score clearly worse: by more than one standard error of the
    CV accuracy. Mirroring is a safe prior for photographs (two views, averaged, are a
    lower-variance prediction; on clothing CV tied while test gained 2 points); where it is
    wrong (text, digits, left/right classes) the folds show it plainly."""
    if True not in best:
        return False
    plain = best[False][0]
    standard_error = (plain * (1 - plain) / rows) ** 0.5
    return best[True][0] >= plain - standard_error


def predict(choice: HeadChoice, x: np.ndarray, x_mirror: np.ndarray | None) -> np.ndarray:
    """Class probabilities of the chosen head (the mean with the mirror's when it uses them)."""
    probs = _softmax(x @ choice.kernel + choice.bias)
    if choice.mirror and x_mirror is not None:
        probs = (probs + _softmax(x_mirror @ choice.kernel + choice.bias)) / 2
    return probs


@dataclass
class _Fitted:
    weights: np.ndarray  # (candidates, features, classes) on standardised features
    bias: np.ndarray  # (candidates, classes)
    mean: np.ndarray
    scale: np.ndarray


def _fit(x, x_mirror, y, rows, num_classes, lambdas, mirror, class_weight) -> _Fitted:
    features, labels = x[rows], y[rows]
    if mirror:
        features, labels = np.concatenate([features, x_mirror[rows]]), np.tile(labels, 2)
    features = np.asarray(features, np.float32)
    mean, scale = features.mean(0), feature_scale(features)
    weight = None if class_weight is None else class_weight[labels]
    w, b = fit_softmax((features - mean) / scale, labels, num_classes, lambdas, weight)
    return _Fitted(w, b, mean, scale)


def feature_scale(features: np.ndarray) -> np.ndarray:
    """Each feature's divisor for standardising: its std, but at least SCALE_FLOOR times the
    mean std of all features.

    A feature that is almost constant on the training images (a ReLU channel of the base that
    fires on a handful of them, common on uniform images such as products or hands on a plain
    background) has a tiny std; dividing by it would give its row of the folded kernel weights
    thousands of times the others'. int8 and float16 exports quantize the kernel with one scale
    per class, which that row then sets, rounding every other weight to nothing; in float the
    model would swing on any new image where the channel fires.

    >>> x = np.array([[0.0, 1.0], [0.0, 3.0], [1e-4, 2.0]], np.float32)
    >>> x.std(0).astype(float).round(5).tolist(), feature_scale(x).astype(float).round(5).tolist()
    ([5e-05, 0.8165], [0.04083, 0.8165])
    """
    std = features.std(0)
    return np.maximum(std, max(SCALE_FLOOR * float(std.mean()), 1e-6)).astype(np.float32)


def fit_softmax(x, y, num_classes, lambdas, sample_weight=None, steps=STEPS, rate=RATE):
    """L2-regularised softmax regression for several lambdas at once, full batch, on TensorFlow.

    Returns (weights (L, D, C), bias (L, C)). Deterministic: zeros in, the same steps out.
    """
    sample = np.ones(len(y), np.float32) if sample_weight is None else sample_weight
    weights, bias = _adam_fit()(
        tf.constant(x, tf.float32),
        tf.one_hot(y, num_classes),
        tf.constant(sample / sample.sum(), tf.float32),
        tf.constant(np.asarray(lambdas, np.float32)),
        tf.constant(steps),
        tf.constant(rate, tf.float32),
    )
    return weights.numpy(), bias.numpy()


@functools.cache
def _adam_fit():
    """Full-batch Adam with cosine decay, traced once for any number of rows (the folds differ)."""

    @tf.function(reduce_retracing=True)
    def fit(inputs, targets, sample, lam, steps, rate):
        shape = (tf.shape(lam)[0], tf.shape(inputs)[1], tf.shape(targets)[1])
        params = [tf.zeros(shape), tf.zeros((shape[0], shape[2]))]
        first = [tf.zeros_like(p) for p in params]
        second = [tf.zeros_like(p) for p in params]
        beta1, beta2, total = 0.9, 0.999, tf.cast(steps, tf.float32)
        for step in tf.range(steps):
            with tf.GradientTape() as tape:
                tape.watch(params)
                logits = tf.einsum("nd,ldc->lnc", inputs, params[0]) + params[1][:, None]
                losses = tf.nn.softmax_cross_entropy_with_logits(
                    tf.broadcast_to(targets, tf.shape(logits)), logits
                )
                penalty = 0.5 * lam * tf.reduce_sum(tf.square(params[0]), [1, 2])
                loss = tf.reduce_sum(tf.reduce_sum(losses * sample, 1) + penalty)
            grads = tape.gradient(loss, params)
            t = tf.cast(step, tf.float32) + 1.0
            lr = rate * 0.5 * (1.0 + tf.cos(np.pi * (t - 1.0) / total))
            lr = lr * tf.sqrt(1.0 - beta2**t) / (1.0 - beta1**t)
            first = [beta1 * m + (1 - beta1) * g for m, g in zip(first, grads, strict=True)]
            second = [beta2 * v + (1 - beta2) * g * g for v, g in zip(second, grads, strict=True)]
            params = [
                p - lr * m / (tf.sqrt(v) + 1e-7)
                for p, m, v in zip(params, first, second, strict=True)
            ]
        return params[0], params[1]

    return fit


def _probabilities(model: _Fitted, x, x_mirror) -> np.ndarray:
    def probs(features):
        z = (np.asarray(features, np.float32) - model.mean) / model.scale
        return _softmax(np.einsum("nd,ldc->lnc", z, model.weights) + model.bias[:, None])

    return probs(x) if x_mirror is None else (probs(x) + probs(x_mirror)) / 2


def _fold_standardisation(model: _Fitted) -> tuple[np.ndarray, np.ndarray]:
    """W z + b with z = (x - mean) / scale, as one Dense layer on x."""
    weights = model.weights[0].astype(np.float64) / model.scale[:, None]
    bias = model.bias[0] - model.mean.astype(np.float64) @ weights
    return weights.astype(np.float32), bias.astype(np.float32)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def _cv_sample(y: np.ndarray, seed: int) -> np.ndarray:
    """All rows, or a random CV_ROWS_LIMIT of them on large datasets (the fits stay fast)."""
    if len(y) <= CV_ROWS_LIMIT:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    keep = rng.permutation(len(y))[:CV_ROWS_LIMIT]
    return np.sort(keep)


def _stratified_folds(y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """A fold number per row; each class spread evenly over the folds."""
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(y), np.int64)
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        fold_of[members] = np.arange(len(members)) % folds
    return fold_of
