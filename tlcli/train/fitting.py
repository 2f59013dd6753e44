"""Fit one stage with Keras callbacks, so that a killed stage resumes where it stopped.

Callbacks: `EpochBackup` (below), CSVLogger (history.csv), TensorBoard (logs/), EarlyStopping
when configured. Keras' BackupAndRestore writes its weights file in place and its epoch counter
in a second file, so a kill at the wrong moment leaves a torn or mismatched pair; `EpochBackup`
saves the same state (weights and optimizer variables) under a name that carries the epoch and
moves it into place atomically, and `resume_point` reads it back before fit() starts. history.csv
is cut back to the restored epoch, so it stays continuous whatever the moment of the kill.

>>> import tempfile
>>> import numpy as np
>>> from tlcli.config import FinetuneConfig
>>> keras.utils.set_random_seed(0)
>>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
>>> model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
>>> import tensorflow as tf
>>> x, y = np.random.rand(16, 4), np.eye(2)[np.arange(16) % 2]
>>> batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
>>> stage_dir = Path(tempfile.mkdtemp())
>>> outcome = fit_stage(model, batches, None, FinetuneConfig(epochs=2), stage_dir, verbose=0)
>>> outcome.epochs_done, sorted(p.name for p in stage_dir.iterdir())
(2, ['backup', 'history.csv', 'logs'])
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras

from tlcli.config import TrainStage
from tlcli.files import atomic_path, read_csv_rows, write_csv_rows
from tlcli.runtime.distribute import same_on_all_workers

BACKUP_PATTERN = re.compile(r"epoch-(\d+)\.weights\.h5$")


class EpochBackup(keras.callbacks.Callback):
    """After each epoch, save weights and optimizer state to backup/epoch-N.weights.h5."""

    def __init__(self, backup_dir: Path) -> None:
        super().__init__()
        self.backup_dir = backup_dir

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        target = self.backup_dir / f"epoch-{epoch + 1:05d}.weights.h5"
        with atomic_path(target) as tmp:
            self.model.save_weights(tmp)
        for older in self.backup_dir.glob("epoch-*.weights.h5"):
            if older != target:
                older.unlink()


def resume_point(model: keras.Model, backup_dir: Path) -> int:
    """Load the newest backup into a compiled model; returns the number of finished epochs."""
    backups = sorted(
        (int(m.group(1)), p)
        for p in backup_dir.glob("epoch-*.weights.h5")
        if (m := BACKUP_PATTERN.search(p.name))
    )
    if not backups:
        return 0
    epochs_done, path = backups[-1]
    if model.optimizer is not None and not model.optimizer.built:
        # so its variables can be restored; under tf.distribute they must be created in scope
        with model.distribute_strategy.scope():
            model.optimizer.build(model.trainable_variables)
    model.load_weights(path)
    return epochs_done


def trim_history(history_csv: Path, epochs_done: int) -> None:
    """Keep only the rows of finished (backed-up) epochs: a resumed run appends after them."""
    rows = read_csv_rows(history_csv)
    if not rows:
        return
    columns = list(rows[0])
    kept = [
        row
        for row in rows
        if None not in row
        and None not in row.values()  # not a row torn by a kill
        and row["epoch"].isdigit()
        and int(row["epoch"]) < epochs_done
    ]
    write_csv_rows(history_csv, kept, columns)


class FirstBatchClock(keras.callbacks.Callback):
    """Wall-clock time (time.time()) when the first training batch starts: start-up cost."""

    def __init__(self) -> None:
        super().__init__()
        self.at: float | None = None

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if self.at is None:
            self.at = time.time()


@dataclass
class FitOutcome:
    epochs_done: int
    resumed_from: int
    stopped_early: bool
    seconds: float
    final: dict[str, float]  # the last epoch's logs
    first_batch_at: float | None = None  # time.time() of the first training batch


def fit_stage(
    model: keras.Model,
    train_ds,
    val_ds,
    stage: TrainStage,
    stage_dir: Path,
    verbose: int,
    resume_from: Path | None = None,
    extra_callbacks: Sequence[keras.callbacks.Callback] = (),
) -> FitOutcome:
    """Train `model` for the stage's epochs, resuming from stage_dir/backup when it holds one.

    `resume_from` is another backup folder to resume from: a non-chief worker writes to a
    throwaway stage_dir but resumes from the chief's backups, like every other worker.
    `extra_callbacks` are the caller's, run after tlcli's own (so they see each epoch backed up).
    """
    backup_dir = stage_dir / "backup"
    history_csv = stage_dir / "history.csv"
    stage_dir.mkdir(parents=True, exist_ok=True)  # CSVLogger opens history.csv in it
    source = resume_from or backup_dir
    initial_epoch = same_on_all_workers(resume_point(model, source), f"the backup in {source}")
    if initial_epoch:
        trim_history(history_csv, initial_epoch)
    elif history_csv.exists():
        history_csv.unlink()
    clock = FirstBatchClock()
    callbacks: list[keras.callbacks.Callback] = [
        clock,
        EpochBackup(backup_dir),
        keras.callbacks.CSVLogger(str(history_csv), append=True),
        keras.callbacks.TensorBoard(str(stage_dir / "logs"), write_graph=False, profile_batch=0),
    ]
    early = None
    if stage.early_stopping is not None and (
        val_ds is not None or "val_" not in stage.early_stopping.monitor
    ):
        early = keras.callbacks.EarlyStopping(
            monitor=stage.early_stopping.monitor,
            patience=stage.early_stopping.patience,
            min_delta=stage.early_stopping.min_delta,
            restore_best_weights=stage.early_stopping.restore_best_weights,
            mode="max" if "accuracy" in stage.early_stopping.monitor else "min",
        )
        callbacks.append(early)
    callbacks += list(extra_callbacks)
    started = time.perf_counter()
    history = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=stage.epochs,
        initial_epoch=initial_epoch,
        callbacks=callbacks,
        verbose=verbose,
        shuffle=False,  # the dataset shuffles itself; Keras warns when asked to
    )
    seconds = time.perf_counter() - started
    final = {k: float(v[-1]) for k, v in history.history.items() if v}
    epochs_done = initial_epoch + len(history.epoch)
    return FitOutcome(
        epochs_done=epochs_done,
        resumed_from=initial_epoch,
        stopped_early=bool(early is not None and early.stopped_epoch > 0),
        seconds=seconds,
        final=final,
        first_batch_at=clock.at,
    )
