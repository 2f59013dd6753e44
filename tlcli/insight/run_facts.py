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

from tlcli.rundir import (
    CALIBRATION_RECORD,
    CONFIG_FILE,
    DATA_REPORT_FILE,
    DOCTOR_SUMMARY,
    METRICS_FILE,
    SEARCH_RECORD,
    STAGES,
    TARGET_STAGES,
    VERSIONS_FILE,
    RunDir,
    read_record,
)


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
        config=_yaml(run.file(CONFIG_FILE)),
        versions=run.read_record(VERSIONS_FILE) or {},
        data_report=run.read_record(DATA_REPORT_FILE) or {},
        doctor=read_record(run.doctor_dir, DOCTOR_SUMMARY),
    )
    for stage in STAGES:
        if run.is_finished(stage):
            folder = run.stage_dir(stage)
            facts.stages[stage] = StageFacts(
                stage,
                folder,
                run.stage_state(stage) or {},
                run.read_stage_record(stage, METRICS_FILE),
                run.read_stage_record(stage, CALIBRATION_RECORD),
                run.read_stage_record(stage, SEARCH_RECORD),
            )
    return facts


def _yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
