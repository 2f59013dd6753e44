"""A stage stopped after any epoch and resumed ends exactly as an uninterrupted one would: the
same history.csv and the same model weights, to the last bit, cached and uncached, with and
without augmentation, with early stopping.

Two ways to stop a stage right after epoch N's backup is saved (a kill at that moment loses
nothing more):

- snapshot: an uninterrupted run copies its run folder at that moment, which is exactly what a
  kill would leave on disk; the copy is put back afterwards and the stage resumed from it
  (one training fewer per check, so the default suite covers every path);
- raise: the backup callback raises, and the stage is resumed after the failure (slow: every
  path after every epoch, and stopped several times over).

A resume in a new process is tested in test_resume.py (SIGKILL) and test_interrupt.py (SIGINT).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml
from conftest import config_dict, make_image_folder

from tlcli.config import load_config
from tlcli.console import Console
from tlcli.train import fitting, stages

EPOCHS = 3
AUGMENT = {"flip": "horizontal", "zoom": 0.2}
# Only the first epoch counts as an improvement: epoch 1's weights are the best, restored at the
# end, from the backup kept for them; with patience 1 the stage stops after epoch 2.
NO_IMPROVEMENT = {"monitor": "val_loss", "min_delta": 100.0, "restore_best_weights": True}
UNCACHED_UNFREEZE = {"from_block": "block5", "epochs": EPOCHS, "cache": "off"}
# Two-stage runs (dropout in the head): finetune trains on cached features, unfreeze uncached.
RUNS = {
    "no augmentation": {
        "finetune": {"cache": "on", "early_stopping": {**NO_IMPROVEMENT, "patience": 5}},
        "unfreeze": UNCACHED_UNFREEZE,
    },
    "augmentation": {
        "data": {"augment": AUGMENT},
        "finetune": {"cache_views": 2},
        "unfreeze": UNCACHED_UNFREEZE,
    },
}


class Stopped(Exception):
    pass


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_image_folder(
        tmp_path_factory.mktemp("exact") / "data", {"train": 7, "val": 2}, size=32
    )


def _config(data_root: Path, sections: dict, name: str) -> object:
    config = config_dict(
        data_root,
        name=name,
        data={"test_dir": None, "batch_size": 4, **sections.get("data", {})},
        model={"base": "vgg16", "weights": "none", "head": {"dense": [8], "dropout": 0.5}},
        finetune={"epochs": EPOCHS, **sections["finetune"]},
        unfreeze=sections.get("unfreeze"),
    )
    file = data_root.parent / f"{name}.yaml"
    file.write_text(yaml.safe_dump(config))
    return load_config(file)


def _outcome(cfg, stage: str) -> tuple[str, list[np.ndarray]]:
    folder = cfg.run_dir / stage
    model = keras.models.load_model(folder / "model.keras", compile=False)
    return (folder / "history.csv").read_text(), model.get_weights()


def _assert_same(resumed, reference) -> None:
    (history, weights), (reference_history, reference_weights) = resumed, reference
    assert history == reference_history
    assert len(weights) == len(reference_weights)
    for got, expected in zip(weights, reference_weights, strict=True):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    ("run", "stops"),
    [
        ("no augmentation", {"finetune": 2, "unfreeze": 1}),  # the middle, the first epoch
        ("augmentation", {"finetune": 1, "unfreeze": 3}),  # the first, the last epoch
    ],
)
@pytest.mark.slow
def test_a_resumed_stage_ends_as_an_uninterrupted_one(data_root, run, stops, monkeypatch):
    cfg = _config(data_root, RUNS[run], run.replace(" ", "-"))
    snapshots = data_root.parent / f"snapshots-{cfg.name}"
    save_backup = fitting.EpochBackup.on_epoch_end

    def snapshot_after(self, epoch, logs=None):
        save_backup(self, epoch, logs)
        stage = self.backup_dir.parent.name
        if stops.get(stage) == epoch + 1:
            shutil.copytree(cfg.run_dir, snapshots / stage)

    monkeypatch.setattr(fitting.EpochBackup, "on_epoch_end", snapshot_after)
    quiet = Console(quiet=True)
    stages.finetune(cfg, "new", quiet)
    stages.unfreeze(cfg, "new", quiet)
    monkeypatch.undo()
    uninterrupted = {stage: _outcome(cfg, stage) for stage in stops}
    for stage in stops:
        shutil.rmtree(cfg.run_dir)
        shutil.copytree(snapshots / stage, cfg.run_dir)  # what a kill then leaves
        assert not (cfg.run_dir / stage / "model.keras").exists()
        result = stages.STAGE_FUNCTIONS[stage](cfg, "resume", quiet)
        assert result.epochs == EPOCHS
        _assert_same(_outcome(cfg, stage), uninterrupted[stage])


# ------------------------------------------------------------------- slow: stopped by raising

PATHS = {
    "cached": {"finetune": {"cache": "on"}},
    "uncached": {"finetune": {"cache": "off"}},
    "cached views": {"data": {"augment": AUGMENT}, "finetune": {"cache_views": 2}},
    "uncached augmented": {"data": {"augment": AUGMENT}, "finetune": {"cache": "off"}},
    "best epoch restored": {
        "finetune": {"cache": "on", "early_stopping": {**NO_IMPROVEMENT, "patience": 5}}
    },
    "stopped early": {
        "finetune": {"cache": "on", "early_stopping": {**NO_IMPROVEMENT, "patience": 1}}
    },
}
_references: dict[str, tuple] = {}


def _reference(data_root: Path, path: str) -> tuple:
    if path not in _references:
        cfg = _config(data_root, PATHS[path], f"ref-{path.replace(' ', '-')}")
        stages.finetune(cfg, "new", Console(quiet=True))
        _references[path] = _outcome(cfg, "finetune")
    return _references[path]


def _finetune_stopping_after(cfg, stops: list[int], monkeypatch):
    """finetune, stopped after each epoch in `stops` in turn, resumed after each stop."""
    save_backup = fitting.EpochBackup.on_epoch_end
    pending = list(stops)

    def stop_after(self, epoch, logs=None):
        save_backup(self, epoch, logs)
        if pending and epoch + 1 == pending[0]:
            pending.pop(0)
            raise Stopped

    monkeypatch.setattr(fitting.EpochBackup, "on_epoch_end", stop_after)
    mode = "new"
    for _ in range(len(stops) + 1):
        try:
            result = stages.finetune(cfg, mode, Console(quiet=True))
            break
        except Stopped:
            mode = "resume"
    assert not pending, "every stop happened"
    return result


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in PATHS if p != "stopped early"])
@pytest.mark.parametrize("stops", [[1], [2], [3], [1, 2, 3]])
def test_every_path_resumes_exactly_after_every_epoch(data_root, path, stops, monkeypatch):
    cfg = _config(
        data_root, PATHS[path], f"slow-{path.replace(' ', '-')}-{'-'.join(map(str, stops))}"
    )
    assert _finetune_stopping_after(cfg, stops, monkeypatch).epochs == EPOCHS
    _assert_same(_outcome(cfg, "finetune"), _reference(data_root, path))


@pytest.mark.slow
def test_a_stage_killed_after_early_stopping_decided_ends_at_the_same_epoch(data_root, monkeypatch):
    cfg = _config(data_root, PATHS["stopped early"], "slow-stopped-early")
    assert _finetune_stopping_after(cfg, [2], monkeypatch).epochs == 2
    _assert_same(_outcome(cfg, "finetune"), _reference(data_root, "stopped early"))
