"""The types the training core passes around: a stage being run, what fit() trains on, what
training did, and what a stage function returns. Nothing here imports the rest of `tlcli.train`,
so every step of a stage can import these at the top.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tlcli.config import AugmentConfig, Config, DataConfig, TrainStage
from tlcli.console import Console
from tlcli.data.stage_data import DecodedSplit, StageData
from tlcli.rundir import RunDir


@dataclass
class StageJob:
    """One training stage being run: which, on what data, with which settings, where."""

    cfg: Config
    run: RunDir
    name: str  # pretrain, finetune or unfreeze
    data: StageData
    data_cfg: DataConfig
    stage_cfg: TrainStage  # the stage's own config section (cfg.finetune, ...)
    console: Console
    callbacks: Sequence[Any] = ()  # the caller's Keras callbacks, passed on to fit()

    @property
    def stage_dir(self) -> Path:
        return self.run.stage_dir(self.name)


@dataclass
class TrainingInputs:
    """What fit() trains on: the whole model on decoded images, or its top on cached features."""

    model: Any  # keras.Model: what fit() trains
    splits: dict[str, DecodedSplit]
    views: int  # cached augmented views per training image (1: none)
    augment: AugmentConfig | None  # augmentation still to apply per batch
    cache: dict[str, Any]  # what the feature cache did, for stage.json
    bottom: Any = None  # keras.Model: the frozen bottom whose outputs `splits` hold (cached)


@dataclass
class FitOutcome:
    """What training a stage did, for stage.json and the console."""

    epochs_done: int
    resumed_from: int
    stopped_early: bool
    seconds: float
    final: dict[str, float]  # the last epoch's logs
    first_batch_at: float | None = None  # time.time() of the first training batch
    backup_seconds: float = 0.0  # of `seconds`, spent saving the per-epoch backups
    details: dict = field(default_factory=dict)  # what else stage.json should say


@dataclass
class StageResult:
    """What a stage function returns."""

    stage: str
    model_path: Path
    skipped: bool = False
    epochs: int = 0
    seconds: float = 0.0
    val_accuracy: float | None = None
