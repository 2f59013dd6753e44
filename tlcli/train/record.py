"""A stage's bookkeeping in its folder, in one place: when it starts, and what it leaves.

`begin_stage` writes stage.json with status "running" and the config fingerprint, from which
point a rerun needs resume or overwrite; `end_stage` writes labels.txt and curves.png, then
stage.json with status "finished", epochs, timings, cache use and runtime, and removes the
per-epoch backup.
"""

from __future__ import annotations

import shutil
import time
from typing import TYPE_CHECKING, Any

from tlcli.config import Config, stage_fingerprint
from tlcli.files import read_json, write_text
from tlcli.rundir import (
    BACKUP_DIR,
    CURVES_PLOT,
    HISTORY_FILE,
    LABELS_FILE,
    SEARCH_RECORD,
    RunDir,
)
from tlcli.train.plots import plot_curves, plot_search

if TYPE_CHECKING:
    from tlcli.train.core import StageJob
    from tlcli.train.fitting import FitOutcome


def begin_stage(run: RunDir, stage: str, cfg: Config) -> None:
    run.start_stage(stage, stage_fingerprint(cfg, stage))


def end_stage(
    job: StageJob,
    outcome: FitOutcome,
    cache: dict[str, Any],
    runtime: dict[str, Any],
    details: dict[str, Any] | None = None,
) -> None:
    """Everything a finished stage leaves besides model.keras (already in place); `details`
    go into stage.json too (the head search's and the weight mix's choices, TTA)."""
    stage_dir = job.stage_dir
    write_text(stage_dir / LABELS_FILE, "\n".join(job.data.classes) + "\n")
    title = f"{job.cfg.name}: {job.name}"
    if "search" in outcome.details:  # one fit, no epochs: show what the search compared
        plot_search(read_json(stage_dir / SEARCH_RECORD), stage_dir / CURVES_PLOT, title)
    else:
        plot_curves(stage_dir / HISTORY_FILE, stage_dir / CURVES_PLOT, title)
    job.run.finish_stage(
        job.name,
        {
            "epochs": outcome.epochs_done,
            "resumed_from_epoch": outcome.resumed_from,
            "stopped_early": outcome.stopped_early,
            "timings": {
                "data_seconds": round(job.data.seconds, 2),
                "cache_seconds": cache.get("seconds", 0.0),
                "fit_seconds": round(outcome.seconds, 2),
                "backup_seconds": round(outcome.backup_seconds, 2),
                "first_batch_at": outcome.first_batch_at,
                "stage_started_at": job.data.started_at,
                "stage_finished_at": time.time(),
            },
            "cache": cache,
            "runtime": runtime,
            "final": outcome.final,
            **outcome.details,
            **(details or {}),
        },
    )
    shutil.rmtree(stage_dir / BACKUP_DIR, ignore_errors=True)
