"""The work of the profile-uncached suite (imports TensorFlow): see profile_uncached.py."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from benchmarks import plain_keras
from tlcli.config import AugmentConfig, FinetuneConfig
from tlcli.data.folders import scan_folder
from tlcli.data.image_cache import decode_folder
from tlcli.data.pipeline import EpochBatches
from tlcli.data.stage_data import DecodedSplit
from tlcli.train.fitting import fit_stage


class EpochClock(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def load_images(args: argparse.Namespace, workdir: Path) -> DecodedSplit:
    folder = scan_folder(args.data)
    size = (args.image_size, args.image_size)
    decoded = decode_folder(folder, size, workdir / "cache")
    rows = np.flatnonzero(decoded.ok)
    rows = np.resize(rows, args.images)  # repeat the folder up to --images
    labels = folder.labels[rows]
    return DecodedSplit("train", "train_dir", decoded.pixels, rows, labels, [])


def unfrozen_model(args: argparse.Namespace, num_classes: int, augment: bool) -> keras.Model:
    keras.utils.set_random_seed(0)
    base = plain_keras.build_base(args.base, args.image_size, "none")
    layers = plain_keras.augmentation(0.1, 0) if augment else []
    model = plain_keras.build_classifier(base, args.base, num_classes, layers)
    plain_keras.unfreeze_top(base, 0)
    plain_keras.compile_model(model, 1e-5)
    return model


def run_keras(args, split: DecodedSplit, num_classes: int) -> list[float]:
    images = np.asarray(split.pixels[split.rows], np.float32)
    onehot = keras.utils.to_categorical(split.labels, num_classes)
    dataset = tf.data.Dataset.from_tensor_slices((images, onehot)).batch(args.batch_size)
    dataset = dataset.cache().prefetch(tf.data.AUTOTUNE)
    model = unfrozen_model(args, num_classes, args.augment)
    clock = EpochClock()
    model.fit(dataset, epochs=args.epochs, callbacks=[clock], verbose=0)
    return clock.seconds


def batches(args, split: DecodedSplit, num_classes: int) -> EpochBatches:
    augment = AugmentConfig(flip="horizontal", zoom=0.1) if args.augment else None
    return EpochBatches(split, num_classes, args.batch_size, seed=0, augment=augment)


def run_tlcli_pipeline(args, split: DecodedSplit, num_classes: int) -> list[float]:
    train = batches(args, split, num_classes)
    model = unfrozen_model(args, num_classes, False)
    clock = EpochClock()
    model.fit(
        train.dataset(0, args.epochs),
        steps_per_epoch=train.steps,
        epochs=args.epochs,
        callbacks=[clock],
        verbose=0,
    )
    return clock.seconds


def run_tlcli_fit_stage(args, split, num_classes: int, workdir: Path) -> dict:
    train = batches(args, split, num_classes)
    model = unfrozen_model(args, num_classes, False)
    clock = EpochClock()
    outcome = fit_stage(
        model,
        train,
        None,
        FinetuneConfig(epochs=args.epochs),
        workdir / "stage",
        verbose=0,
        extra_callbacks=[clock],
    )
    return {"epochs": clock.seconds, "backup_seconds": outcome.backup_seconds}


def summary(seconds: list[float]) -> float:
    return statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]


def profile(args: argparse.Namespace) -> dict:
    """Seconds of every epoch of each of the three ways, and the backups' total time."""
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        split = load_images(args, workdir)
        num_classes = int(split.labels.max()) + 1
        results = {
            "keras": run_keras(args, split, num_classes),
            "tlcli pipeline": run_tlcli_pipeline(args, split, num_classes),
        }
        staged = run_tlcli_fit_stage(args, split, num_classes, workdir)
        results["tlcli fit_stage"] = staged["epochs"]
    baseline = summary(results["keras"])
    print(
        f"{args.base}, {args.image_size} px, {args.images} images, batch {args.batch_size}, "
        f"every layer but BatchNorm trained, augment {'flip+zoom' if args.augment else 'off'}"
    )
    print(f"{'':18} epoch s (median after the 1st)  keras/this   all epochs")
    for name, seconds in results.items():
        median = summary(seconds)
        epochs = ", ".join(f"{s:.2f}" for s in seconds)
        print(f"{name:18} {median:12.2f} {baseline / median:22.2f}x   [{epochs}]")
    per_epoch = staged["backup_seconds"] / args.epochs
    print(f"epoch backup (weights + optimizer + random states): {per_epoch:.2f} s per epoch")
    return {**results, **staged}
