"""`tlcli run`, `pretrain`, `finetune`, `unfreeze` and `evaluate` as plain functions: the same
files in the run folder as the commands, reports and model cards included.

    import keras

    from tlcli import api
    from tlcli.config import load_config

    cfg = load_config("configs/quickstart.yaml")
    api.run(cfg, callbacks=[keras.callbacks.TerminateOnNaN()])
    api.evaluate(cfg, stage="finetune", calibrate=True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tlcli.config import Config
from tlcli.console import Console
from tlcli.insight.reports import write_reports
from tlcli.rundir import Mode
from tlcli.train.calibration import calibrate_stage, uncalibrate_stage
from tlcli.train.core import StageResult
from tlcli.train.evaluate import Evaluation, score_stage
from tlcli.train.stages import finetune, pretrain, run_all, unfreeze

__all__ = ["evaluate", "finetune", "pretrain", "run", "unfreeze"]


def run(
    cfg: Config,
    mode: Mode = "new",
    console: Console | None = None,
    *,
    callbacks: Sequence[Any] = (),
) -> list[StageResult]:
    """Every stage the config defines, in order; then evaluate each trained target stage and
    write its error report, reliability diagram and model card, and the run's report.html.

    `callbacks` (Keras callbacks) are passed on to every stage's fit().
    """
    console = console or Console()
    results = run_all(cfg, mode, console, callbacks=callbacks)
    write_reports(cfg.run_dir, console=console)
    return results


def evaluate(
    cfg: Config,
    stage: str | None = None,
    console: Console | None = None,
    *,
    calibrate: bool | None = None,
) -> Evaluation:
    """Calibrate the stage (True), undo its calibration (False) or leave it (None); evaluate it
    (default: the latest trained stage); write its reports and the run's report.html."""
    console = console or Console()
    if calibrate:
        calibrate_stage(cfg, stage, console)
    elif calibrate is False:
        uncalibrate_stage(cfg.run_dir, stage, console)
    evaluation = score_stage(cfg, stage, console)
    write_reports(cfg.run_dir, [evaluation.stage], console)
    return evaluation
