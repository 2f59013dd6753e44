"""tf.data pipelines over decoded images: shuffle, batch, augment, prefetch.

Images were decoded once into a uint8 array (see image_cache.py), so an epoch only gathers a
batch of rows, converts it to float and augments it; nothing is decoded per image per epoch.
Labels come one-hot (label smoothing needs them) and, with `class_weight: balanced`, each
example carries a weight.

>>> from pathlib import Path
>>> pixels = np.zeros((10, 8, 8, 3), np.uint8)
>>> split = DecodedSplit("train", "train_dir", pixels, np.arange(10), np.arange(10) % 2,
...                      [Path(f"{i}.png") for i in range(10)])
>>> images, onehot = next(iter(make_dataset(split, 2, 4, shuffle=True, seed=1)))
>>> images.shape, images.dtype.name, onehot.shape
(TensorShape([4, 8, 8, 3]), 'float32', TensorShape([4, 2]))
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tlcli.config import AugmentConfig
from tlcli.data.stage_data import DecodedSplit


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
) -> tf.data.Dataset:
    """Batches of (float32 inputs, one-hot labels[, weights]) from a split's array.

    `split.pixels` is the decoded uint8 images, or cached features (feature_cache.py); with
    `views > 1` it holds several augmented views of each example, shaped (views, rows, ...), and
    each example is served in a randomly chosen view each epoch.
    """
    rows = np.asarray(split.rows)
    labels = np.asarray(split.labels, dtype=np.int32)
    source = split.pixels
    sample_shape = tuple(source.shape[2:] if views > 1 else source.shape[1:])

    def gather(positions: np.ndarray, view_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # One read per batch from the memory map, in storage order (sequential on disk).
        order = np.lexsort((rows[positions], view_ids))
        positions, view_ids = positions[order], view_ids[order]
        batch = source[view_ids, rows[positions]] if views > 1 else source[rows[positions]]
        return np.ascontiguousarray(batch), labels[positions]

    def load(positions: tf.Tensor, view_ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        batch, batch_labels = tf.numpy_function(
            gather, [positions, view_ids], (tf.as_dtype(source.dtype), tf.int32)
        )
        batch.set_shape([None, *sample_shape])
        batch_labels.set_shape([None])
        return tf.cast(batch, tf.float32), tf.one_hot(batch_labels, num_classes)

    dataset = tf.data.Dataset.range(len(rows))
    if shuffle:
        dataset = dataset.shuffle(len(rows), seed=seed, reshuffle_each_iteration=True)
    # The random stream restarts each epoch but meets a new shuffle order, so every example
    # sees a different view from epoch to epoch, deterministically for a given seed.
    view_stream = tf.data.Dataset.random(seed=seed).map(lambda r: r % views)
    dataset = tf.data.Dataset.zip(dataset, view_stream).batch(batch_size)
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    layers = augmentation_layers(augment, sample_shape[:2], seed) if augment else []
    if layers:

        def augment_batch(images: tf.Tensor, onehot: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            for layer in layers:
                images = layer(images, training=True)
            return images, onehot

        # One call at a time: the layers draw from seeded generators whose state would advance
        # in whatever order parallel calls happen to run, and runs would not repeat.
        dataset = dataset.map(augment_batch)
    if class_weights is not None:
        weights = tf.constant(class_weights, tf.float32)
        dataset = dataset.map(
            lambda inputs, onehot: (inputs, onehot, tf.linalg.matvec(onehot, weights)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    # Under a multi-worker strategy every worker runs this same pipeline (same seed, same
    # order) and keeps its share of each global batch: DATA sharding. There are no files to
    # shard by, so AUTO would fall back to DATA with a warning. Ignored without tf.distribute.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(options)


def inputs_only(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Drop labels (and weights) for predict()."""
    return dataset.map(lambda inputs, *_: inputs)


def augmentation_layers(augment: AugmentConfig, size: tuple[int, int], seed: int) -> list:
    """Keras preprocessing layers for the configured augmentation, in a fixed order."""
    import keras

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
