"""Fit one stage with Keras callbacks, so that a killed stage resumes exactly where it stopped.

Callbacks: `EpochBackup` (below), `HistoryLogger` (history.csv), TensorBoard (logs/), EarlyStopping
when configured. Keras' BackupAndRestore writes its weights file in place and its epoch counter
in a second file, so a kill at the wrong moment leaves a torn or mismatched pair; `EpochBackup`
saves the same state (weights and optimizer variables) under a name that carries the epoch and
moves it into place atomically, and `resume_point` reads it back before fit() starts. history.csv
is cut back to the restored epoch, so it stays continuous whatever the moment of the kill.

A resumed stage ends as an uninterrupted one would, to the last bit on the same machine:

- the data of each epoch (order, cached view, augmentation) is a function of (seed, epoch), so
  fit() starts the training batches at the resumed epoch (`tlcli.data.pipeline.EpochBatches`);
- the states of the model's random generators (Dropout's `SeedGenerator`s, which
  `save_weights` leaves out) go into the backup file too, and are restored with the weights
  (`tlcli.train.training_state`: the whole state, written in one go);
- early stopping replays the finished epochs from history.csv, and the backup of its best epoch
  is kept, so that `restore_best_weights` restores the same weights.

>>> import tempfile
>>> import numpy as np
>>> from tlcli.config import FinetuneConfig
>>> from tlcli.data.pipeline import EpochBatches
>>> from tlcli.data.stage_data import DecodedSplit
>>> keras.utils.set_random_seed(0)
>>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
>>> model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
>>> features = np.random.rand(16, 4).astype(np.float32)
>>> split = DecodedSplit("train", "train_dir", features, np.arange(16), np.arange(16) % 2, [])
>>> stage_dir = Path(tempfile.mkdtemp())
>>> outcome = fit_stage(model, EpochBatches(split, 2, 8), None, FinetuneConfig(epochs=2),
...                     stage_dir, verbose=0)
>>> outcome.epochs_done, sorted(p.name for p in stage_dir.iterdir())
(2, ['backup', 'history.csv', 'logs'])
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras

from tlcli.config import TrainStage
from tlcli.data.pipeline import EpochBatches
from tlcli.files import atomic_path, read_csv_rows, write_csv_rows
from tlcli.rundir import BACKUP_DIR, HISTORY_FILE, LOGS_DIR
from tlcli.runtime.distribute import same_on_all_workers
from tlcli.train.training_state import load_state, save_state

BACKUP_PATTERN = re.compile(r"epoch-(\d+)\.weights\.h5$")


def backup_path(backup_dir: Path, epochs_done: int) -> Path:
    return backup_dir / f"epoch-{epochs_done:05d}.weights.h5"


class EpochBackup(keras.callbacks.Callback):
    """After each epoch, save weights, optimizer and random states to backup/epoch-N.weights.h5
    (`tlcli.train.training_state`).

    The backups of older epochs are deleted, except the one `keep()` names (the best epoch, when
    early stopping will restore it).
    """

    def __init__(self, backup_dir: Path, keep: Callable[[], int | None] = lambda: None) -> None:
        super().__init__()
        self.backup_dir = backup_dir
        self.keep = keep
        self.seconds = 0.0  # spent saving backups: the price of resuming

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        started = time.perf_counter()
        target = backup_path(self.backup_dir, epoch + 1)
        with atomic_path(target) as tmp:
            save_state(self.model, tmp)
        kept = {target}
        if (best := self.keep()) is not None:
            kept.add(backup_path(self.backup_dir, best))
        for older in self.backup_dir.glob("epoch-*.weights.h5"):
            if older not in kept:
                older.unlink()
        self.seconds += time.perf_counter() - started


class HistoryLogger(keras.callbacks.CSVLogger):
    """Keras' CSVLogger with LF line ends, as every other CSV file tlcli writes (and the rows it
    keeps of history.csv on a resume): its writer takes the csv module's Excel dialect, CRLF."""

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)
        self.csv_file = _LineFeeds(self.csv_file)


class _LineFeeds:
    """A text file whose writes end lines with LF where the csv module ends them with CRLF."""

    def __init__(self, file) -> None:
        self._file = file

    def write(self, text: str) -> int:
        return self._file.write(text.replace("\r\n", "\n"))

    def __getattr__(self, name: str):
        return getattr(self._file, name)


def newest_backup(backup_dir: Path) -> int:
    """The number of epochs the newest backup in `backup_dir` holds; 0 without one."""
    numbers = [
        int(m.group(1))
        for p in backup_dir.glob("epoch-*.weights.h5")
        if (m := BACKUP_PATTERN.search(p.name))
    ]
    return max(numbers, default=0)


def load_backup(model: keras.Model, path: Path) -> None:
    """Weights, optimizer state and random generator states from a backup, into `model`."""
    load_state(model, path)


def resume_point(model: keras.Model, backup_dir: Path) -> int:
    """Load the newest backup into a compiled model; returns the number of finished epochs."""
    epochs_done = newest_backup(backup_dir)
    if epochs_done:
        load_backup(model, backup_path(backup_dir, epochs_done))
    return epochs_done


def finished_rows(history_csv: Path, epochs_done: int) -> list[dict[str, str]]:
    """The rows of history.csv for the first `epochs_done` epochs (those a backup holds)."""
    return _finished(read_csv_rows(history_csv), epochs_done)


def trim_history(history_csv: Path, epochs_done: int) -> None:
    """Keep only the rows of finished (backed-up) epochs: a resumed run appends after them."""
    rows = read_csv_rows(history_csv)
    if rows:
        write_csv_rows(history_csv, _finished(rows, epochs_done), list(rows[0]))


def _finished(rows: list[dict[str, str]], epochs_done: int) -> list[dict[str, str]]:
    return [
        row
        for row in rows
        if None not in row
        and None not in row.values()  # not a row torn by a kill
        and row["epoch"].isdigit()
        and int(row["epoch"]) < epochs_done
    ]


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping that carries on from the epochs finished before a resume."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._replayed = False

    def replay(
        self, model: keras.Model, rows: list[dict[str, str]], best_weights: Callable[[int], list]
    ) -> bool:
        """Feed the finished epochs' logged values to the rule, as fit() did; True when it
        stopped training already. `best_weights(epoch)` gives the weights after that epoch."""
        self.set_model(model)
        super().on_train_begin()
        restore, self.restore_best_weights = self.restore_best_weights, False
        for row in rows:
            logs = {self.monitor: float(row[self.monitor])} if row.get(self.monitor) else {}
            super().on_epoch_end(int(row["epoch"]), logs)
        self.restore_best_weights = restore
        if restore and self.best is not None:
            self.best_weights = best_weights(self.best_epoch + 1)
        model.stop_training = False
        self._replayed = True
        return self.stopped_epoch > 0

    def on_train_begin(self, logs: dict | None = None) -> None:
        if not self._replayed:
            super().on_train_begin(logs)

    def kept_backup(self) -> int | None:
        """The backup to keep for `restore_best_weights`: that of the best epoch so far."""
        return self.best_epoch + 1 if self.restore_best_weights and self.best is not None else None


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """TensorBoard writing once per epoch, without its per-batch hook: with `update_freq=
    "epoch"` and no profiling that hook writes nothing, but its presence makes Keras wait for
    every batch's logs (no asynchronous callbacks), which costs most on a GPU."""

    on_train_batch_end = keras.callbacks.Callback.on_train_batch_end


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
    backup_seconds: float = 0.0  # of `seconds`, spent saving the per-epoch backups
    details: dict = field(default_factory=dict)  # what else stage.json should say


def fit_stage(
    model: keras.Model,
    train: EpochBatches,
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
    backup_dir = stage_dir / BACKUP_DIR
    history_csv = stage_dir / HISTORY_FILE
    stage_dir.mkdir(parents=True, exist_ok=True)  # CSVLogger opens history.csv in it
    early = _early_stopping(stage, val_ds is not None)
    initial_epoch, rows, last_epoch = _resume(
        model, resume_from or backup_dir, history_csv, early, stage.epochs
    )
    clock = FirstBatchClock()
    backup = EpochBackup(backup_dir, keep=early.kept_backup if early else lambda: None)
    # In this order: the epoch's row is in history.csv before its backup exists (a resume cuts
    # rows back to the backup), and EarlyStopping has judged the epoch before the backup keeps
    # its best one.
    callbacks: list[keras.callbacks.Callback] = [
        clock,
        HistoryLogger(str(history_csv), append=True),
        *([early] if early else []),
        backup,
        EpochTensorBoard(str(stage_dir / LOGS_DIR), write_graph=False, profile_batch=0),
    ]
    callbacks += list(extra_callbacks)
    started = time.perf_counter()
    epochs_run: list[int] = []
    final: dict[str, float] = {}
    if last_epoch > initial_epoch:
        history = model.fit(
            train.dataset(initial_epoch, last_epoch),
            steps_per_epoch=train.steps,
            validation_data=val_ds,
            epochs=last_epoch,
            initial_epoch=initial_epoch,
            callbacks=callbacks,
            verbose=verbose,
            shuffle=False,  # the dataset orders itself; Keras warns when asked to shuffle it
        )
        epochs_run = history.epoch
        final = {k: float(v[-1]) for k, v in history.history.items() if v}
    elif early is not None:
        early.on_train_end()  # it had stopped before the kill: end with its best weights
    if not final and rows:  # nothing left to train: the last epoch trained before the resume
        final = {k: float(v) for k, v in rows[-1].items() if k != "epoch"}
    seconds = time.perf_counter() - started
    return FitOutcome(
        epochs_done=initial_epoch + len(epochs_run),
        resumed_from=initial_epoch,
        stopped_early=bool(early is not None and early.stopped_epoch > 0),
        seconds=seconds,
        final=final,
        first_batch_at=clock.at,
        backup_seconds=backup.seconds,
    )


def _resume(
    model: keras.Model,
    source: Path,
    history_csv: Path,
    early: ResumableEarlyStopping | None,
    epochs: int,
) -> tuple[int, list[dict[str, str]], int]:
    """Restore the newest backup in `source`, cut history.csv back to it, and replay early
    stopping; returns (epochs done, their history rows, the epoch to train up to)."""
    initial_epoch = same_on_all_workers(newest_backup(source), f"the backup in {source}")
    # The chief's history, beside its backups: every worker replays the same epochs.
    rows = finished_rows(source.parent / HISTORY_FILE, initial_epoch) if initial_epoch else []
    if initial_epoch:
        trim_history(history_csv, initial_epoch)
    elif history_csv.exists():
        history_csv.unlink()
    if early is not None and initial_epoch:

        def best_weights(epochs_done: int) -> list | None:
            path = backup_path(source, epochs_done)
            if not path.is_file():
                return None
            load_backup(model, path)
            return model.get_weights()

        if early.replay(model, rows, best_weights):
            epochs = initial_epoch  # it had stopped: nothing left to train
    resume_point(model, source)
    return initial_epoch, rows, epochs


def _early_stopping(stage: TrainStage, has_val: bool) -> ResumableEarlyStopping | None:
    settings = stage.early_stopping
    if settings is None or (not has_val and "val_" in settings.monitor):
        return None
    return ResumableEarlyStopping(
        monitor=settings.monitor,
        patience=settings.patience,
        min_delta=settings.min_delta,
        restore_best_weights=settings.restore_best_weights,
        mode="max" if "accuracy" in settings.monitor else "min",
    )
