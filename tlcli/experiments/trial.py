"""One trial of a sweep: a normal tlcli run under `<sweep>/trials/NNNN/`, pruned per epoch.

The trial's config (config.yaml in its folder) is the sweep's with the trial's values; its
stages run as `tlcli run --resume` would run them, so a re-queued trial continues its folder
from the last epoch backup. Every command that works on a run works on a trial. Besides the run's
own files the folder holds trial.json: the trial's number, values, state and score.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import keras

from tlcli.config import Config
from tlcli.console import Console
from tlcli.rundir import TRIAL_RECORD, RunDir
from tlcli.train.stages import STAGE_FUNCTIONS


class PruningReporter(keras.callbacks.Callback):
    """Report the metric to Optuna after each epoch; stop training when the pruner says so.

    Stopping (rather than raising) lets the stage end as usual: its model.keras and curves are
    written and the trial's folder stays a run every command works on.
    """

    def __init__(self, trial, metric: str) -> None:
        super().__init__()
        self.trial = trial
        self.metric = metric
        self.offset = 0  # epochs of the stages before this one: steps run across stages
        self.pruned_at: int | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(self.metric)
        if value is None:
            return
        step = self.offset + epoch
        self.trial.report(float(value), step)
        if self.trial.should_prune():
            self.pruned_at = step
            self.model.stop_training = True


@dataclass
class TrialOutcome:
    state: str  # complete, pruned, failed
    value: float | None = None
    error: str | None = None
    seconds: float = 0.0
    pruned_at: int | None = None
    stages: list[str] = field(default_factory=list)


def run_trial(
    cfg: Config, trial, values: dict[str, Any], metric: str, console: Console
) -> TrialOutcome:
    """Train every stage of the trial's config, reporting each epoch; a failure is an outcome."""
    reporter = PruningReporter(trial, metric)
    started = time.perf_counter()
    run = RunDir(cfg.run_dir)
    record = {"number": trial.number, "values": values, "state": "running", "metric": metric}
    run.write_record(TRIAL_RECORD, record)
    outcome = TrialOutcome("complete")
    try:
        for stage in cfg.defined_stages():
            STAGE_FUNCTIONS[stage](cfg, "resume", console, callbacks=[reporter])
            outcome.stages.append(stage)
            if reporter.pruned_at is not None:
                outcome.state, outcome.pruned_at = "pruned", reporter.pruned_at
                break
            reporter.offset += getattr(cfg, stage).epochs
        final = (run.stage_state(outcome.stages[-1]) or {}).get("final", {})
        outcome.value = final.get(metric)
        if outcome.value is None:
            raise ValueError(f"the last stage recorded no {metric}")
    except Exception as exc:  # a failed trial is a result: the sweep goes on with the next
        outcome.state, outcome.error = "failed", error_line(exc)
    outcome.seconds = round(time.perf_counter() - started, 2)
    record.update(
        state=outcome.state,
        value=outcome.value,
        error=outcome.error,
        seconds=outcome.seconds,
        pruned_at_epoch=outcome.pruned_at,
    )
    run.write_record(TRIAL_RECORD, record)
    return outcome


def error_line(exc: BaseException) -> str:
    """One line for results: the error's type and the first line of its message."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}"[:300] if first else type(exc).__name__
