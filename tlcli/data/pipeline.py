"""tf.data pipelines over decoded images: order, batch, augment, prefetch, for any run of epochs.

Images were decoded once into a uint8 array (`tlcli.cache.decoded_images`), so an epoch only
gathers a batch of rows, converts it to float and augments it; nothing is decoded per image per
epoch.
Labels come one-hot (label smoothing needs them) and, with `class_weight: balanced`, each
example carries a weight.

A dataset covers a range of epochs, one after the other, and every random choice in it is a
function of (seed, epoch, batch) alone: the order of an epoch and the cached view each example
is served in come from a NumPy generator seeded with (seed, epoch), and the augmentation layers'
generators are set from (their seed, batch number) before each batch. So epoch 7 is the same
whether training started at epoch 0 or resumed at epoch 5 (`tlcli.train.fitting`), and the
pipeline may run ahead across epoch boundaries without changing what it serves.

>>> from pathlib import Path
>>> pixels = np.zeros((10, 8, 8, 3), np.uint8)
>>> split = DecodedSplit("train", "train_dir", pixels, np.arange(10), np.arange(10) % 2,
...                      [Path(f"{i}.png") for i in range(10)])
>>> images, onehot = next(iter(make_dataset(split, 2, 4, shuffle=True, seed=1)))
>>> images.shape, images.dtype.name, onehot.shape
(TensorShape([4, 8, 8, 3]), 'float32', TensorShape([4, 2]))
>>> batches = EpochBatches(split, 2, 4, seed=1)
>>> batches.steps, len(list(batches.dataset(first=2, last=4)))  # epochs 2 and 3, 3 batches each
(3, 6)
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from tlcli.config import AugmentConfig
from tlcli.data.stage_data import DecodedSplit

# Random draws one augmentation layer may make per batch: each batch's generator state starts
# at batch_number * DRAWS_PER_BATCH, so batches never share random numbers.
DRAWS_PER_BATCH = 64
# Fixed parallelism instead of tf.data's autotuning (see `_options`): a batch is read and
# converted in parallel on every core, and the next PREFETCH_BATCHES wait ready for the model.
PARALLEL_CALLS = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
PREFETCH_BATCHES = 2


def make_dataset(
    split: DecodedSplit,
    num_classes: int,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    augment: AugmentConfig | None = None,
    class_weights: np.ndarray | None = None,
    views: int = 1,
    epochs: tuple[int, int] = (0, 1),
) -> tf.data.Dataset:
    """Batches of (float32 inputs, one-hot labels[, weights]) for epochs first..last-1.

    `split.array` is the decoded uint8 images, or cached features (`tlcli.cache.features`); with
    `views > 1` it holds several augmented views of each example, shaped (views, rows, ...), and
    each epoch serves each example in one of them, drawn at random.
    """
    rows = np.asarray(split.rows)
    labels = np.asarray(split.labels, dtype=np.int32)
    source, reader = split.array, split.reader
    sample_shape = tuple(source.shape[2:] if views > 1 else source.shape[1:])
    steps = steps_per_epoch(len(rows), batch_size)

    @functools.lru_cache(maxsize=4)  # batches of one epoch are gathered in parallel threads
    def epoch_plan(epoch: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([seed % 2**63, epoch])
        order = rng.permutation(len(rows)) if shuffle else np.arange(len(rows))
        return order, rng.integers(0, views, len(rows))

    def gather(number: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        epoch, batch = divmod(int(number), steps)
        order, view_of = epoch_plan(epoch)
        positions = order[batch * batch_size : (batch + 1) * batch_size]
        view_ids = view_of[positions]
        # Read in storage order (sequential on disk), from the file rather than its memory map.
        sort = np.lexsort((rows[positions], view_ids))
        positions, view_ids = positions[sort], view_ids[sort]
        flat_rows = view_ids * source.shape[1] + rows[positions] if views > 1 else rows[positions]
        return reader(source, flat_rows, len(sample_shape)), labels[positions]

    def load(number: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        batch, batch_labels = tf.numpy_function(
            gather, [number], (tf.as_dtype(source.dtype), tf.int32)
        )
        batch.set_shape([None, *sample_shape])
        batch_labels.set_shape([None])
        return tf.cast(batch, tf.float32), tf.one_hot(batch_labels, num_classes), number

    first, last = epochs
    dataset = tf.data.Dataset.range(first * steps, last * steps)
    dataset = dataset.map(load, num_parallel_calls=PARALLEL_CALLS, deterministic=True)
    layers = augmentation_layers(augment, sample_shape[:2], seed) if augment else []
    if layers:
        dataset = dataset.map(
            _augmenter(layers), num_parallel_calls=PARALLEL_CALLS, deterministic=True
        )
    else:
        dataset = dataset.map(lambda inputs, onehot, number: (inputs, onehot))
    if class_weights is not None:
        weights = tf.constant(class_weights, tf.float32)
        dataset = dataset.map(
            lambda inputs, onehot: (inputs, onehot, tf.linalg.matvec(onehot, weights))
        )
    return dataset.prefetch(PREFETCH_BATCHES).with_options(_options())


def _options() -> tf.data.Options:
    options = tf.data.Options()
    # Autotuning off: destroying the iterator waits out its model thread's sleep, idle time at
    # the end of every fit() (docs/notes-from-code.md); gathering cached rows needs no tuning.
    options.autotune.enabled = False
    # Under a multi-worker strategy every worker runs this same pipeline (same seed, same
    # order) and keeps its share of each global batch: DATA sharding. There are no files to
    # shard by, so AUTO would fall back to DATA with a warning. Ignored without tf.distribute.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


@dataclass
class EpochBatches:
    """A split's training batches for any range of epochs: what fit() needs to start anywhere.

    Shuffled, augmented and class-weighted as configured; epoch e is the same batches whichever
    epoch the range starts at.
    """

    split: DecodedSplit
    num_classes: int
    batch_size: int
    seed: int = 0
    augment: AugmentConfig | None = None
    class_weights: np.ndarray | None = None
    views: int = 1

    @property
    def steps(self) -> int:
        return steps_per_epoch(len(self.split), self.batch_size)

    def dataset(self, first: int, last: int) -> tf.data.Dataset:
        return make_dataset(
            self.split,
            self.num_classes,
            self.batch_size,
            shuffle=True,
            seed=self.seed,
            augment=self.augment,
            class_weights=self.class_weights,
            views=self.views,
            epochs=(first, last),
        )


def steps_per_epoch(examples: int, batch_size: int) -> int:
    return max(1, math.ceil(examples / batch_size))


def _augmenter(layers: list):
    """A map function: augment one batch, each layer's draws seeded from the batch number.

    Draw k of a layer in batch n is seeded (layer seed, n * DRAWS_PER_BATCH + k), as if its
    `SeedGenerator` had been set to (seed, n * DRAWS_PER_BATCH) before the batch; but nothing
    is stored between draws (`_BatchSeeds`), so batches are augmented in parallel.
    """
    seeds = [
        (int(np.asarray(layer.generator.state)[0]), layer.generator.state.dtype)
        if hasattr(layer, "generator")
        else None
        for layer in layers
    ]

    def augment_batch(images: tf.Tensor, onehot: tf.Tensor, number: tf.Tensor):
        counter = number * DRAWS_PER_BATCH
        for layer, seed in zip(layers, seeds, strict=True):
            if seed is None:  # Resizing after RandomCrop: nothing random
                images = layer(images, training=True)
                continue
            batch_seeds = _BatchSeeds(*seed, counter)
            # Traced once: the graph holds stateless draws from (seed, counter + k).
            object.__setattr__(layer, "_get_seed_generator", lambda *_, s=batch_seeds: s)
            try:
                images = layer(images, training=True)
            finally:
                object.__delattr__(layer, "_get_seed_generator")
        return images, onehot

    return augment_batch


class _BatchSeeds(keras.random.SeedGenerator):
    """A `SeedGenerator` without its state variable (Keras random ops take a seed generator,
    checked by type, or an int): draw k returns (seed, counter + k)."""

    def __init__(self, seed: int, dtype, counter: tf.Tensor) -> None:  # no variable: no super()
        self.seed, self.dtype, self.counter, self.draws = seed, dtype, counter, 0

    def next(self, ordered: bool = True) -> tf.Tensor:
        value = tf.stack(
            [tf.constant(self.seed, self.dtype), tf.cast(self.counter + self.draws, self.dtype)]
        )
        self.draws += 1
        return value


def inputs_only(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Drop labels (and weights) for predict()."""
    return dataset.map(lambda inputs, *_: inputs)


def augmentation_layers(augment: AugmentConfig, size: tuple[int, int], seed: int) -> list:
    """Keras preprocessing layers for the configured augmentation, in a fixed order."""
    height, width = size
    layers = []
    if augment.flip != "none":
        layers.append(keras.layers.RandomFlip(augment.flip, seed=seed))
    if augment.rotation:
        layers.append(keras.layers.RandomRotation(augment.rotation, seed=seed + 1))
    if augment.zoom:
        layers.append(keras.layers.RandomZoom((-augment.zoom, augment.zoom), seed=seed + 2))
    if augment.translate:
        layers.append(
            keras.layers.RandomTranslation(augment.translate, augment.translate, seed=seed + 3)
        )
    if augment.crop:
        crop_h = max(1, round(height * (1 - augment.crop)))
        crop_w = max(1, round(width * (1 - augment.crop)))
        layers += [
            keras.layers.RandomCrop(crop_h, crop_w, seed=seed + 4),
            keras.layers.Resizing(height, width),
        ]
    if augment.contrast:
        layers.append(keras.layers.RandomContrast(augment.contrast, seed=seed + 5))
    if augment.brightness:
        layers.append(
            keras.layers.RandomBrightness(augment.brightness, value_range=(0, 255), seed=seed + 6)
        )
    return layers


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """n_samples / (n_classes * count_c): each class contributes equally to the loss."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    return (len(labels) / (num_classes * np.maximum(counts, 1))).astype(np.float32)
