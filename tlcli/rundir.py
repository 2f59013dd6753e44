"""The run directory: its layout, the stages it holds, and the rules that keep runs apart.

Layout of `<output_dir>/<name>/`::

    config.yaml        the resolved config of the latest command
    versions.json      python, tensorflow, keras, tlcli
    labels.txt         the target classes, one per line, in output order
    data_report.json   class counts per split; every skipped or converted file and why
    split.csv          which file went to which split
    cache/             decoded images and features, keyed by content (safe to delete)
    <stage>/           pretrain/, finetune/, unfreeze/: model.keras, labels.txt, history.csv,
                       curves.png, logs/ (TensorBoard), stage.json, and while it runs, backup/
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
MODEL_FILE = "model.keras"
LABELS_FILE = "labels.txt"
EXPORT_INFO = "export.json"  # in every export folder: what was exported, from which stage
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

    @property
    def cache_dir(self) -> Path:
        return self.path / "cache"

    @property
    def export_dir(self) -> Path:
        return self.path / "export"

    def stage_state(self, stage: str) -> dict | None:
        """The stage's stage.json, or None when the stage never started."""
        path = self.stage_dir(stage) / "stage.json"
        return read_json(path) if path.is_file() else None

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
        write_json(self.stage_dir(stage) / "stage.json", state)

    def finish_stage(self, stage: str, summary: dict[str, Any]) -> None:
        """Mark a stage finished: called after its model.keras is in place."""
        state = self.stage_state(stage) or {}
        state.update(status="finished", finished=_now(), **summary)
        write_json(self.stage_dir(stage) / "stage.json", state)

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
            write_json(self.path / "exports.json", kept)
        return removed

    def exports_elsewhere(self) -> list[dict[str, str]]:
        """Exports of this run written outside export/: [{"path", "stage"}, ...]."""
        path = self.path / "exports.json"
        return read_json(path) if path.is_file() else []

    def record_export(self, folder: Path, stage: str) -> None:
        """Remember an export of `stage` outside export/, for `remove_stages` to name."""
        folder = folder.absolute()
        if folder.is_relative_to(self.export_dir.absolute()):
            return
        known = [e for e in self.exports_elsewhere() if e["path"] != str(folder)]
        write_json(self.path / "exports.json", [*known, {"path": str(folder), "stage": stage}])


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
