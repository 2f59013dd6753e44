"""What every stage does before it builds a model: start TensorFlow, record the run, load data.

Each step is its own function, in the order a stage calls them (`start_stage_work` runs all):

1. `start_tensorflow`: import it quietly, create the run's tf.distribute strategy (first: a
   multi-worker strategy must precede any other TensorFlow work), seed every generator;
2. `write_run_files`: config.yaml and versions.json, the run's self-description;
3. `load_data`: find, decode and check the stage's images (every image problem surfaces here,
   before a model exists), and say what was skipped or converted.
"""

from __future__ import annotations

import platform
import sys
import time

import numpy as np

from tlcli import __version__
from tlcli.config import Config
from tlcli.console import Console
from tlcli.data.stage_data import StageData, load_stage_data
from tlcli.files import write_text
from tlcli.rundir import CONFIG_FILE, DATA_REPORT_FILE, LABELS_FILE, VERSIONS_FILE, RunDir
from tlcli.runtime.distribute import is_chief, start_distribution, write_path
from tlcli.runtime.startup import import_tensorflow, set_seed


def start_stage_work(
    cfg: Config, run: RunDir, stage: str, console: Console, *, write_run_files_too: bool = True
) -> StageData:
    """Steps 1-3 for `stage`; returns its data, with `started_at` set to now."""
    started_at = time.time()
    run.check_not_a_sweep()
    start_tensorflow(cfg)
    if write_run_files_too and is_chief():
        write_run_files(cfg, run)
    data = load_data(cfg, run, stage, console)
    data.started_at = started_at
    return data


def start_tensorflow(cfg: Config) -> None:
    import_tensorflow()
    start_distribution(cfg.run)  # first: a multi-worker strategy must precede other TF work
    set_seed(cfg.seed)


def write_run_files(cfg: Config, run: RunDir) -> None:
    """config.yaml (every key resolved) and versions.json."""
    import keras
    import tensorflow as tf

    run.path.mkdir(parents=True, exist_ok=True)
    write_text(run.file(CONFIG_FILE), cfg.to_yaml())
    versions = {
        "tlcli": __version__,
        "python": sys.version.split()[0],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
    }
    run.write_record(VERSIONS_FILE, versions)


def load_data(
    cfg: Config, run: RunDir, stage: str, console: Console, *, require_trainable: bool = True
) -> StageData:
    """The stage's decoded data; its problems on the console and in its report: pretrain's in
    its own folder (another dataset), the target stages' in the run folder (they share one).
    `require_trainable=False` lets the doctor look at data no stage could train on."""
    data_cfg = cfg.stage_data(stage)
    image_size = data_cfg.image_size or cfg.image_size
    report_dir = run.stage_dir(stage) if stage == "pretrain" else run.path
    report_dir = write_path(report_dir)  # other workers keep their reports to themselves
    with console.progress() as progress:
        data = load_stage_data(
            data_cfg,
            tuple(image_size),
            cfg.seed,
            write_path(cfg.cache_path),
            report_dir,
            progress,
            require_trainable=require_trainable,
        )
    report = data.report
    if report["skipped"] or report["converted"]:
        console.warn(
            f"{len(report['skipped'])} file(s) skipped, {len(report['converted'])} converted: "
            f"see {report_dir / DATA_REPORT_FILE}"
        )
    for warning in report["warnings"]:
        console.warn(warning)
    if report_dir == run.path and is_chief():
        write_text(run.path / LABELS_FILE, "\n".join(data.classes) + "\n")
    return data
