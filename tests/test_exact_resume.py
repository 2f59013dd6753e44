"""A stage stopped after any epoch and resumed ends exactly as an uninterrupted one would: the
same history.csv and the same model weights, to the last bit, cached and uncached, with and
without augmentation.

The stage is stopped by raising from the backup callback right after epoch N's backup is saved
(a kill at that moment loses nothing more), and resumed with mode="resume" after that failure,
as `tlcli ... --resume` would. A fresh process for the resume is tested in test_resume.py
(SIGKILL, uncached) and test_interrupt.py (SIGINT, cached views).
"""

from __future__ import annotations

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
# finetune with dropout in its head, for each way a stage can train
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


class Stopped(Exception):
    pass


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_image_folder(
        tmp_path_factory.mktemp("exact") / "data", {"train": 7, "val": 2}, size=32
    )


def _config(data_root: Path, path: str, name: str) -> object:
    sections = PATHS[path]
    config = config_dict(
        data_root,
        name=name,
        data={"test_dir": None, "batch_size": 4, **sections.get("data", {})},
        model={"base": "vgg16", "weights": "none", "head": {"dense": [8], "dropout": 0.5}},
        finetune={"epochs": EPOCHS, **sections["finetune"]},
    )
    file = data_root.parent / f"{name}.yaml"
    file.write_text(yaml.safe_dump(config))
    return load_config(file)


def _finetune_stopping_after(cfg, stops: list[int], monkeypatch) -> None:
    """finetune, stopped after each epoch in `stops` in turn, resumed after each stop."""
    save_backup = fitting.EpochBackup.on_epoch_end
    pending = list(stops)

    def stop_after(self, epoch, logs=None):
        save_backup(self, epoch, logs)
        if pending and epoch + 1 == pending[0]:
            pending.pop(0)
            raise Stopped

    monkeypatch.setattr(fitting.EpochBackup, "on_epoch_end", stop_after)
    quiet = Console(quiet=True)
    mode = "new"
    for _ in range(len(stops) + 1):
        try:
            result = stages.finetune(cfg, mode, quiet)
            break
        except Stopped:
            mode = "resume"
    assert not pending, "every stop happened"
    return result


def _outcome(cfg) -> tuple[str, list[np.ndarray]]:
    stage = cfg.run_dir / "finetune"
    model = keras.models.load_model(stage / "model.keras", compile=False)
    return (stage / "history.csv").read_text(), model.get_weights()


def _assert_same(resumed, reference) -> None:
    history, weights = resumed
    reference_history, reference_weights = reference
    assert history == reference_history
    assert len(weights) == len(reference_weights)
    for got, expected in zip(weights, reference_weights, strict=True):
        np.testing.assert_array_equal(got, expected)


_references: dict[str, tuple] = {}


def _reference(data_root: Path, path: str) -> tuple:
    if path not in _references:
        cfg = _config(data_root, path, f"ref-{path.replace(' ', '-')}")
        stages.finetune(cfg, "new", Console(quiet=True))
        _references[path] = _outcome(cfg)
    return _references[path]


@pytest.mark.parametrize(
    ("path", "stops"),
    [
        ("uncached augmented", [1]),  # resumed at the first epoch
        ("best epoch restored", [2]),  # the cached path, resumed in the middle
    ],
)
def test_a_resumed_stage_ends_as_an_uninterrupted_one(data_root, path, stops, monkeypatch):
    cfg = _config(data_root, path, f"stopped-{path.replace(' ', '-')}-{stops[-1]}")
    result = _finetune_stopping_after(cfg, stops, monkeypatch)
    assert result.epochs == EPOCHS
    _assert_same(_outcome(cfg), _reference(data_root, path))


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in PATHS if p != "stopped early"])
@pytest.mark.parametrize("stops", [[1], [2], [3], [1, 2, 3]])
def test_every_path_resumes_exactly_after_every_epoch(data_root, path, stops, monkeypatch):
    cfg = _config(data_root, path, f"slow-{path.replace(' ', '-')}-{'-'.join(map(str, stops))}")
    assert _finetune_stopping_after(cfg, stops, monkeypatch).epochs == EPOCHS
    _assert_same(_outcome(cfg), _reference(data_root, path))


@pytest.mark.slow
def test_a_stage_killed_after_early_stopping_decided_ends_at_the_same_epoch(data_root, monkeypatch):
    cfg = _config(data_root, "stopped early", "slow-stopped-early")
    assert _finetune_stopping_after(cfg, [2], monkeypatch).epochs == 2
    _assert_same(_outcome(cfg), _reference(data_root, "stopped early"))
