"""tf.data pipelines over decoded images: shuffle, batch, augment, prefetch.

Images were decoded once into a uint8 array (see image_cache.py), so an epoch only gathers a
batch of rows, converts it to float and augments it; nothing is decoded per image per epoch.
Labels come one-hot (label smoothing needs them) and, with `class_weight: balanced`, each
example carries a weight.

>>> train = data.splits["train"]  # doctest: +SKIP
>>> ds = make_dataset(train, data.num_classes, 32, shuffle=True, seed=1)  # doctest: +SKIP
>>> images, labels = next(iter(ds))  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tlcli.config import AugmentConfig
from tlcli.data import DecodedSplit


def make_dataset(
    split: DecodedSplit,
    num_classes: int,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    augment: AugmentConfig | None = None,
    class_weights: np.ndarray | None = None,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Batches of (float32 images 0..255, one-hot labels[, weights]) from a decoded split."""
    rows = np.asarray(split.rows)
    labels = np.asarray(split.labels, dtype=np.int32)
    pixels = split.pixels
    height, width = pixels.shape[1:3]

    def gather(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # One read per batch from the memory map; sorted rows make it sequential on disk.
        order = np.argsort(rows[positions])
        chosen = positions[order]
        return np.ascontiguousarray(pixels[rows[chosen]]), labels[chosen]

    def load(positions: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        images, batch_labels = tf.numpy_function(gather, [positions], (tf.uint8, tf.int32))
        images.set_shape([None, height, width, 3])
        batch_labels.set_shape([None])
        return tf.cast(images, tf.float32), tf.one_hot(batch_labels, num_classes)

    dataset = tf.data.Dataset.range(len(rows))
    if shuffle:
        dataset = dataset.shuffle(len(rows), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    layers = augmentation_layers(augment, (height, width), seed) if augment else []
    if layers:

        def augment_batch(images: tf.Tensor, onehot: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            for layer in layers:
                images = layer(images, training=True)
            return images, onehot

        dataset = dataset.map(augment_batch, num_parallel_calls=tf.data.AUTOTUNE)
    if class_weights is not None:
        weights = tf.constant(class_weights, tf.float32)
        dataset = dataset.map(
            lambda images, onehot: (images, onehot, tf.linalg.matvec(onehot, weights)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return dataset.prefetch(tf.data.AUTOTUNE)


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
