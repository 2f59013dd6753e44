"""What a run folder says about itself, read once for the model card and the report page.

Everything comes from files tlcli wrote: config.yaml, versions.json, data_report.json, each
stage's stage.json, metrics.json and calibration.json, and the doctor's summary.json. Nothing is
recomputed and no model is loaded, so a report can be drawn again from the folder alone.

>>> import tempfile
>>> facts = read_run(Path(tempfile.mkdtemp()))
>>> facts.stages, facts.doctor
({}, None)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tlcli.files import read_json
from tlcli.rundir import STAGES, TARGET_STAGES, RunDir

DOCTOR_DIR = "doctor"
DOCTOR_SUMMARY = "summary.json"


@dataclass
class StageFacts:
    name: str
    folder: Path
    state: dict[str, Any]  # stage.json
    metrics: dict[str, Any] | None  # metrics.json: None when not evaluated
    calibration: dict[str, Any] | None  # calibration.json: None when not calibrated
    search: dict[str, Any] | None = None  # search.json: None when the head was not searched

    @property
    def temperature(self) -> float:
        return float((self.state.get("calibration") or {}).get("temperature", 1.0))


@dataclass
class RunFacts:
    path: Path
    config: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    data_report: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, StageFacts] = field(default_factory=dict)  # every finished stage
    doctor: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return str(self.config.get("name", self.path.name))

    def target_stages(self) -> list[StageFacts]:
        return [facts for name, facts in self.stages.items() if name in TARGET_STAGES]


def read_run(path: Path) -> RunFacts:
    run = RunDir(path)
    facts = RunFacts(
        path=path,
        config=_yaml(path / "config.yaml"),
        versions=_json(path / "versions.json") or {},
        data_report=_json(path / "data_report.json") or {},
        doctor=_json(path / DOCTOR_DIR / DOCTOR_SUMMARY),
    )
    for stage in STAGES:
        if run.is_finished(stage):
            folder = run.stage_dir(stage)
            facts.stages[stage] = StageFacts(
                stage,
                folder,
                run.stage_state(stage) or {},
                _json(folder / "metrics.json"),
                _json(folder / "calibration.json"),
                _json(folder / "search.json"),
            )
    return facts


def _json(path: Path) -> Any:
    return read_json(path) if path.is_file() else None


def _yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
