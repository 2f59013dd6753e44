"""The run directory: its layout, the stages it holds, and the rules that keep runs apart.

Layout of `<output_dir>/<name>/` (each name below is a constant here, and no other module
spells one)::

    config.yaml        the resolved config of the latest command
    versions.json      python, tensorflow, keras, tlcli
    labels.txt         the target classes, one per line, in output order
    data_report.json   class counts per split; every skipped or converted file and why
    split.csv          which file went to which split
    report.html        the run's report page; log.txt, trial.json: a sweep trial's log and record
    cache/             decoded images and features, keyed by content (safe to delete)
    doctor/            doctor.csv, summary.json and the contact sheets of `tlcli doctor`
    <stage>/           pretrain/, finetune/, unfreeze/: model.keras, labels.txt, history.csv,
                       curves.png, logs/ (TensorBoard), stage.json, search.json (a searched
                       head), cached_top.keras; after evaluate metrics.json, predictions.npz,
                       confusion_matrix.png, errors.csv, errors.png, reliability.png,
                       MODEL_CARD.md; after calibrating calibration.json and
                       uncalibrated_output.npz; and while it runs, backup/
    export/            exports (tlcli.serve.export), one folder each, its stage in export.json
    exports.json       exports written elsewhere (`output`), so that overwrite can name them

A stage may start when it never started (no stage.json); a stage that did is only touched with
`resume` (continue it) or `overwrite` (delete it, the stages built on it and their exports under
export/; exports elsewhere are left as they are, and named). A sweep's folder (SWEEP_RECORD in
it, tlcli.experiments.sweep) is never a run's, and a run's folder never a sweep's.

>>> import tempfile
>>> run = RunDir(Path(tempfile.mkdtemp()) / "demo")
>>> run.check_stage("finetune", mode="new", fingerprint={})
True
>>> run.start_stage("finetune", {"seed": 1})
>>> run.check_stage("finetune", mode="new", fingerprint={"seed": 1})
Traceback (most recent call last):
...
tlcli.errors.ConfigError: .../demo/finetune: finetune was interrupted; use mode='resume' to ...
>>> run.set_stage_fact("finetune", "calibration", {"temperature": 1.5})
>>> run.stage_state("finetune")["calibration"], run.read_stage_record("finetune", METRICS_FILE)
({'temperature': 1.5}, None)
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tlcli.errors import ConfigError, Remedy
from tlcli.files import read_json, write_json

Mode = Literal["new", "resume", "overwrite"]

# Which stages are built on which: overwriting one invalidates the ones after it.
DOWNSTREAM = {
    "pretrain": ("finetune", "unfreeze"),
    "finetune": ("unfreeze",),
    "unfreeze": (),
}
STAGES = tuple(DOWNSTREAM)  # in the order they run
TARGET_STAGES = ("finetune", "unfreeze")  # trained on the target task: evaluated, predicted with

# The run's own files
CONFIG_FILE = "config.yaml"
VERSIONS_FILE = "versions.json"
LABELS_FILE = "labels.txt"  # in the run and in each stage
DATA_REPORT_FILE = "data_report.json"
SPLIT_FILE = "split.csv"
REPORT_PAGE = "report.html"
EXPORTS_RECORD = "exports.json"
LOG_FILE = "log.txt"  # a sweep's, and each of its trials'
TRIAL_RECORD = "trial.json"  # a sweep trial's parameters and outcome (tlcli.experiments.trial)
CACHE_DIR = "cache"
EXPORT_DIR = "export"
DOCTOR_DIR = "doctor"
DOCTOR_CSV = "doctor.csv"
DOCTOR_SUMMARY = "summary.json"
# The doctor's contact sheet of each kind of finding, in doctor/
DOCTOR_SHEETS = {
    "near-duplicates": "duplicates.png",
    "label conflicts": "conflicts.png",
    "likely label errors": "label_issues.png",
    "outliers": "outliers.png",
}

# A stage's files
STAGE_RECORD = "stage.json"
MODEL_FILE = "model.keras"
HISTORY_FILE = "history.csv"
CURVES_PLOT = "curves.png"
SEARCH_RECORD = "search.json"  # what a finetune's head search compared and chose
CACHED_TOP = "cached_top.keras"  # a cached stage's trained top, for evaluate
LOGS_DIR = "logs"  # TensorBoard's
BACKUP_DIR = "backup"  # per-epoch backups while the stage runs
# an evaluation's: one of another split than the default has the split's name added
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.npz"
CONFUSION_PLOT = "confusion_matrix.png"
ERRORS_CSV = "errors.csv"
ERRORS_GALLERY = "errors.png"
RELIABILITY_PLOT = "reliability.png"
MODEL_CARD = "MODEL_CARD.md"
CALIBRATION_RECORD = "calibration.json"
UNCALIBRATED_FILE = "uncalibrated_output.npz"  # the output layer as trained, once calibrated

# The files of an export folder, and of a stage for the Keras format
EXPORT_INFO = "export.json"  # in every export folder: what was exported, from which stage
MODEL_FILES = {
    "keras": MODEL_FILE,
    "savedmodel": "saved_model",
    "tflite": "model.tflite",
    "onnx": "model.onnx",
}
SWEEP_RECORD = "sweep.json"  # in every sweep folder: what is swept (tlcli.experiments.sweep)


def check_stage_name(stage: str, allowed: tuple[str, ...] = STAGES) -> str:
    """`stage` if it is one of `allowed`; a ConfigError naming them otherwise.

    >>> check_stage_name("finetune")
    'finetune'
    >>> check_stage_name("pretrain", TARGET_STAGES)
    Traceback (most recent call last):
    ...
    tlcli.errors.ConfigError: stage 'pretrain': expected finetune or unfreeze
    """
    if stage not in allowed:
        names = ", ".join(allowed[:-1]) + f" or {allowed[-1]}" if len(allowed) > 1 else allowed[0]
        raise ConfigError(f"stage '{stage}': expected {names}")
    return stage


# -------------------------------------------------------------------------------- run folder


@dataclass
class Removed:
    """What overwriting removed: stages, their exports under export/, and exports elsewhere
    that were left as they are (they hold models of the removed stages)."""

    stages: list[str] = field(default_factory=list)
    exports: list[Path] = field(default_factory=list)
    left_elsewhere: list[Path] = field(default_factory=list)


@dataclass
class RunDir:
    """One run's folder and the state of its stages."""

    path: Path

    def stage_dir(self, stage: str) -> Path:
        return self.path / stage

    def model_path(self, stage: str) -> Path:
        return self.stage_dir(stage) / MODEL_FILE

    def file(self, name: str) -> Path:
        """The run's file `name` (one of the names above)."""
        return self.path / name

    def stage_file(self, stage: str, name: str) -> Path:
        """`stage`'s file `name` (one of the names above)."""
        return self.stage_dir(stage) / name

    @property
    def cache_dir(self) -> Path:
        return self.path / CACHE_DIR

    @property
    def export_dir(self) -> Path:
        return self.path / EXPORT_DIR

    @property
    def doctor_dir(self) -> Path:
        return self.path / DOCTOR_DIR

    def stage_state(self, stage: str) -> dict | None:
        """The stage's stage.json, or None when the stage never started."""
        return read_record(self.stage_dir(stage), STAGE_RECORD)

    def set_stage_fact(self, stage: str, key: str, value: Any) -> None:
        """Set `key` in the stage's stage.json (remove it when `value` is None)."""
        state = self.stage_state(stage) or {}
        state.pop(key, None)
        if value is not None:
            state[key] = value
        write_json(self.stage_file(stage, STAGE_RECORD), state)

    def read_stage_record(self, stage: str, name: str) -> Any:
        """A JSON file of the stage (METRICS_FILE, SEARCH_RECORD, CALIBRATION_RECORD, ...), or
        None when it is not there."""
        return read_record(self.stage_dir(stage), name)

    def write_stage_record(self, stage: str, name: str, content: Any) -> Path:
        path = self.stage_file(stage, name)
        write_json(path, content)
        return path

    def read_record(self, name: str) -> Any:
        """A JSON file of the run (VERSIONS_FILE, DATA_REPORT_FILE, TRIAL_RECORD, ...), or None
        when it is not there."""
        return read_record(self.path, name)

    def write_record(self, name: str, content: Any) -> Path:
        path = self.file(name)
        write_json(path, content)
        return path

    def is_finished(self, stage: str) -> bool:
        state = self.stage_state(stage)
        return (
            bool(state and state.get("status") == "finished") and self.model_path(stage).is_file()
        )

    def started_stages(self) -> list[str]:
        return [s for s in STAGES if self.stage_state(s) is not None]

    def check_not_a_sweep(self) -> None:
        """A run never writes into a sweep's folder (a sweep's trials are runs in its trials/)."""
        if (self.path / SWEEP_RECORD).is_file():
            raise ConfigError(
                f"{self.path}: a sweep's folder, not a run's", remedies=(Remedy("name"),)
            )

    def check_not_a_run(self) -> None:
        """A sweep never writes into a run's folder."""
        stages = self.started_stages()
        if stages:
            raise ConfigError(
                f"{self.path}: a run's folder (its {', '.join(stages)}), not a sweep's",
                remedies=(Remedy("name"),),
            )

    def trained_stage(self, stage: str | None = None) -> str:
        """`stage` if it finished; by default the latest trained: unfreeze, else finetune."""
        if stage is None:
            for candidate in reversed(TARGET_STAGES):
                if self.is_finished(candidate):
                    return candidate
            raise ConfigError(
                f"{self.path}: no finished finetune or unfreeze stage",
                remedies=(Remedy("train:finetune"),),
            )
        check_stage_name(stage)
        if not self.is_finished(stage):
            raise ConfigError(
                f"{self.path}: no finished {stage} stage in this run",
                remedies=(Remedy(f"train:{stage}"),),
            )
        return stage

    def check_stage(
        self,
        stage: str,
        mode: Mode,
        fingerprint: dict[str, Any],
        on_removed: Callable[[Removed], None] = lambda removed: None,
    ) -> bool:
        """May `stage` run here? False when it is already finished and `mode` is resume.

        new: the stage must never have started. resume: an unfinished stage continues if its
        config is unchanged (its epochs may change). overwrite: the stage, every stage built
        on it and their exports are deleted first (`on_removed` is told what went). Nothing is
        written until `start_stage`.
        """
        if mode == "overwrite":
            on_removed(self.remove_stages([stage, *DOWNSTREAM[stage]]))
            return True
        state = self.stage_state(stage)
        if state is None:
            return True
        finished = self.is_finished(stage)
        if mode == "new":
            status = "finished" if finished else "was interrupted"
            action = "skip it" if finished else "continue it"
            raise ConfigError(
                f"{self.stage_dir(stage)}: {stage} {status}",
                remedies=(
                    Remedy("mode=resume", action),
                    Remedy("mode=overwrite", "train it again"),
                    Remedy("name"),
                ),
            )
        changed = _changed_keys(state.get("fingerprint", {}), fingerprint, stage)
        if changed:
            raise ConfigError(
                f"{self.stage_dir(stage)}: cannot resume {stage}, the config changed at "
                f"{', '.join(changed)}",
                remedies=(Remedy("mode=overwrite", "train it again"), Remedy("name")),
            )
        return not finished

    def start_stage(self, stage: str, fingerprint: dict[str, Any]) -> None:
        """Record that `stage` is running: from here on a rerun needs resume or overwrite."""
        for leftover in self.stage_dir(stage).glob(".*.tmp*"):
            leftover.unlink()  # half-written files of a run that was killed while saving
        state = self.stage_state(stage) or {"started": _now()}
        state.update(status="running", fingerprint=fingerprint)
        write_json(self.stage_file(stage, STAGE_RECORD), state)

    def finish_stage(self, stage: str, summary: dict[str, Any]) -> None:
        """Mark a stage finished: called after its model.keras is in place."""
        state = self.stage_state(stage) or {}
        state.update(status="finished", finished=_now(), **summary)
        write_json(self.stage_file(stage, STAGE_RECORD), state)

    def check_upstream(self, stage: str, upstream: str, fingerprint: dict[str, Any]) -> None:
        """`stage` builds on `upstream`'s model: it must exist, from the same config."""
        if not self.is_finished(upstream):
            raise ConfigError(
                f"{self.path}: {stage} needs a finished {upstream} stage in this run",
                remedies=(Remedy(f"train:{upstream}"),),
            )
        recorded = (self.stage_state(upstream) or {}).get("fingerprint", {})
        changed = _changed_keys(recorded, fingerprint, stage=None)
        if changed:
            raise ConfigError(
                f"{self.path}: {upstream} was trained with a different config "
                f"({', '.join(changed)})",
                remedies=(Remedy("name"), Remedy("mode=overwrite", f"train {upstream} again")),
            )

    def remove_stages(self, stages: list[str]) -> Removed:
        """Delete `stages` and their exports under export/; name their exports elsewhere."""
        removed = Removed()
        for stage in stages:
            folder = self.stage_dir(stage)
            if folder.exists():
                shutil.rmtree(folder)
                removed.stages.append(stage)
        for folder in sorted(self.export_dir.glob(f"*/{EXPORT_INFO}")):
            if read_json(folder).get("stage") in stages:
                shutil.rmtree(folder.parent)
                removed.exports.append(folder.parent)
        elsewhere = self.exports_elsewhere()
        removed.left_elsewhere = [
            Path(e["path"]) for e in elsewhere if e["stage"] in stages and _holds_export(e)
        ]
        if any(e["stage"] in stages for e in elsewhere):
            kept = [e for e in elsewhere if e["stage"] not in stages]
            self.write_record(EXPORTS_RECORD, kept)
        return removed

    def exports_elsewhere(self) -> list[dict[str, str]]:
        """Exports of this run written outside export/: [{"path", "stage"}, ...]."""
        return self.read_record(EXPORTS_RECORD) or []

    def record_export(self, folder: Path, stage: str) -> None:
        """Remember an export of `stage` outside export/, for `remove_stages` to name."""
        folder = folder.absolute()
        if folder.is_relative_to(self.export_dir.absolute()):
            return
        known = [e for e in self.exports_elsewhere() if e["path"] != str(folder)]
        self.write_record(EXPORTS_RECORD, [*known, {"path": str(folder), "stage": stage}])


def read_record(folder: Path, name: str) -> Any:
    """The JSON file `name` in `folder` (a run's, a stage's, an export's), or None when it is
    not there."""
    path = folder / name
    return read_json(path) if path.is_file() else None


def _holds_export(entry: dict[str, str]) -> bool:
    """Whether a recorded export is still there (and was not replaced by another)."""
    info = Path(entry["path"]) / EXPORT_INFO
    return info.is_file() and read_json(info).get("stage") == entry["stage"]


def _changed_keys(before: dict, after: dict, stage: str | None) -> list[str]:
    """Keys whose values differ. A resumed stage may be given more (or fewer) epochs."""
    allowed = {f"{stage}.epochs", f"{stage}.early_stopping"} if stage else set()
    keys = sorted(set(before) | set(after))
    return [
        f"{k} ({before.get(k)!r} -> {after.get(k)!r})"
        for k in keys
        if before.get(k) != after.get(k) and not any(k.startswith(a) for a in allowed)
    ]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
