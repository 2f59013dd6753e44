"""The run directory: its layout, atomic writes, and the rules that keep runs from clobbering.

Layout of `<output_dir>/<name>/`::

    config.yaml        the resolved config of the latest command
    versions.json      python, tensorflow, keras, tlcli
    labels.txt         the target classes, one per line, in output order
    data_report.json   class counts per split; every skipped or converted file and why
    split.csv          which file went to which split
    cache/             decoded images and features, keyed by content (safe to delete)
    <stage>/           pretrain/, finetune/, unfreeze/: model.keras, labels.txt, history.csv,
                       curves.png, logs/ (TensorBoard), stage.json, and while it runs, backup/

A stage may start when it never started (no stage.json); a stage that did is only touched with
`resume` (continue it) or `overwrite` (delete it and the stages built on it).

>>> run = RunDir(Path("runs/demo"))  # doctest: +SKIP
>>> run.check_stage("finetune", mode="new", fingerprint={})  # doctest: +SKIP
True
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tlcli.errors import ConfigError

Mode = Literal["new", "resume", "overwrite"]

# Which stages are built on which: overwriting one invalidates the ones after it.
DOWNSTREAM = {
    "pretrain": ("finetune", "unfreeze"),
    "finetune": ("unfreeze",),
    "unfreeze": (),
}
STAGES = tuple(DOWNSTREAM)  # in the order they run


# ----------------------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; move it into place only if the block succeeds.

    The temporary name keeps every suffix (`.weights.h5`), because Keras picks the file format
    from it.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    stem, dot, suffix = target.name.partition(".")
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{stem}.tmp", suffix=f"{dot}{suffix}")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a new empty folder beside `target`; it replaces `target` only if the block succeeds.

    A folder cannot be swapped in one step, so an existing `target` (the caller decides whether
    it may be replaced) is first renamed aside and deleted once the new one is in place.

    >>> with atomic_dir(Path("runs/demo/export/finetune-keras")) as tmp:  # doctest: +SKIP
    ...     (tmp / "labels.txt").write_text("cat\\ndog\\n")
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    # mkdir, unlike tempfile.mkdtemp (mode 0700), gives the folder the user's usual permissions.
    tmp_path = target.parent / f".{target.name}.tmp-{secrets.token_hex(4)}"
    tmp_path.mkdir()
    try:
        yield tmp_path
        old = target.parent / f".{target.name}.old-{secrets.token_hex(4)}"
        if target.exists():
            os.replace(target, old)
        os.replace(tmp_path, target)
        if old.exists():
            shutil.rmtree(old)
    finally:
        if tmp_path.exists():
            shutil.rmtree(tmp_path)


def write_text(target: Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: Path, data: Any) -> None:
    write_text(target, json.dumps(data, indent=2, default=str) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


# -------------------------------------------------------------------------------- run folder


@dataclass
class RunDir:
    """One run's folder and the state of its stages."""

    path: Path

    def stage_dir(self, stage: str) -> Path:
        return self.path / stage

    def model_path(self, stage: str) -> Path:
        return self.stage_dir(stage) / "model.keras"

    @property
    def cache_dir(self) -> Path:
        return self.path / "cache"

    def stage_state(self, stage: str) -> dict | None:
        """The stage's stage.json, or None when the stage never started."""
        path = self.stage_dir(stage) / "stage.json"
        return read_json(path) if path.is_file() else None

    def is_finished(self, stage: str) -> bool:
        state = self.stage_state(stage)
        return (
            bool(state and state.get("status") == "finished") and self.model_path(stage).is_file()
        )

    def finished_stages(self) -> list[str]:
        return [s for s in STAGES if self.is_finished(s)]

    def started_stages(self) -> list[str]:
        return [s for s in STAGES if self.stage_state(s) is not None]

    def trained_stage(self, stage: str | None = None) -> str:
        """`stage` if it finished; by default the latest trained: unfreeze, else finetune."""
        if stage is None:
            for candidate in ("unfreeze", "finetune"):
                if self.is_finished(candidate):
                    return candidate
            raise ConfigError(
                f"{self.path}: no finished finetune or unfreeze stage; run `tlcli finetune` first"
            )
        if stage not in STAGES:
            raise ConfigError(f"--stage {stage}: expected one of {', '.join(STAGES)}")
        if not self.is_finished(stage):
            raise ConfigError(f"{self.path}: no finished {stage} stage in this run; train it first")
        return stage

    def check_stage(self, stage: str, mode: Mode, fingerprint: dict[str, Any]) -> bool:
        """May `stage` run here? False when it is already finished and `mode` is resume.

        new: the stage must never have started. resume: an unfinished stage continues if its
        config is unchanged (its epochs may change). overwrite: the stage and every stage built
        on it are deleted first. Nothing is written until `start_stage`.
        """
        if mode == "overwrite":
            self.remove_stages([stage, *DOWNSTREAM[stage]])
            return True
        state = self.stage_state(stage)
        if state is None:
            return True
        finished = self.is_finished(stage)
        if mode == "new":
            status = "finished" if finished else "was interrupted"
            action = "skip it" if finished else "continue it"
            raise ConfigError(
                f"{self.stage_dir(stage)}: {stage} {status}; use --resume to {action}, "
                "--overwrite to train it again, or another run name"
            )
        changed = _changed_keys(state.get("fingerprint", {}), fingerprint, stage)
        if changed:
            raise ConfigError(
                f"{self.stage_dir(stage)}: cannot resume {stage}, the config changed at "
                f"{', '.join(changed)}; use --overwrite to train it again, or another run name"
            )
        return not finished

    def start_stage(self, stage: str, fingerprint: dict[str, Any]) -> None:
        """Record that `stage` is running: from here on a rerun needs --resume or --overwrite."""
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
                f"{self.path}: {stage} needs a finished {upstream} stage in this run; "
                f"run `tlcli {upstream}` (or `tlcli run`) first"
            )
        recorded = (self.stage_state(upstream) or {}).get("fingerprint", {})
        changed = _changed_keys(recorded, fingerprint, stage=None)
        if changed:
            raise ConfigError(
                f"{self.path}: {upstream} was trained with a different config "
                f"({', '.join(changed)}); use a new run name, or --overwrite {upstream}"
            )

    def remove_stages(self, stages: list[str]) -> list[str]:
        removed = []
        for stage in stages:
            folder = self.stage_dir(stage)
            if folder.exists():
                shutil.rmtree(folder)
                removed.append(stage)
        return removed


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
