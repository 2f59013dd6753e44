"""A stage killed with SIGKILL mid-epoch resumes with --resume, in a new process, losing at most
that epoch, and (slow) ends exactly as an uninterrupted run of the same config does."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from conftest import config_dict, make_image_folder

from tlcli.config import load_config
from tlcli.console import Console
from tlcli.train import stages


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume(tmp_path, write_config):
    _kill_mid_epoch_then_resume(tmp_path, write_config)


@pytest.mark.slow
def test_a_stage_resumed_after_sigkill_ends_as_an_uninterrupted_one(tmp_path, write_config):
    """In a new process, uncached, every layer training, dropout in the head."""
    run, path = _kill_mid_epoch_then_resume(tmp_path, write_config)
    reference = tmp_path / "runs" / "reference"
    shutil.copytree(run / "finetune", reference / "finetune")  # the same finetune model
    stages.unfreeze(load_config(path, ["name=reference"]), "new", Console(quiet=True))
    history = (run / "unfreeze" / "history.csv").read_text()
    assert history == (reference / "unfreeze" / "history.csv").read_text()
    resumed_weights = keras.models.load_model(run / "unfreeze" / "model.keras").get_weights()
    reference_model = keras.models.load_model(reference / "unfreeze" / "model.keras")
    for got, expected in zip(resumed_weights, reference_model.get_weights(), strict=True):
        np.testing.assert_array_equal(got, expected)


def _kill_mid_epoch_then_resume(tmp_path, write_config):
    root = make_image_folder(tmp_path / "data", {"train": 40, "val": 4}, size=32)
    epochs = 3
    config = config_dict(
        root,
        data={"test_dir": None, "batch_size": 8},
        # every layer trains: slow enough on 2 cores to be caught in the middle of an epoch
        unfreeze={"layers": "all", "epochs": epochs, "optimizer": {"learning_rate": 1e-5}},
        finetune={"epochs": 1},
    )
    path = write_config(config)
    run = tmp_path / "runs" / "t"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    cmd = [sys.executable, "-m", "tlcli"]
    done = subprocess.run([*cmd, "finetune", path, "-q"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr

    process = subprocess.Popen(
        [*cmd, "unfreeze", str(path), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    backup = run / "unfreeze" / "backup"
    deadline = time.monotonic() + 300
    while not list(backup.glob("epoch-00002.weights.h5")):
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "no epoch finished in time"
        time.sleep(0.05)
    time.sleep(0.3)  # now inside epoch 3
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (run / "unfreeze" / "model.keras").exists()

    state = json.loads((run / "unfreeze" / "stage.json").read_text())
    assert state["status"] == "running"
    refused = subprocess.run([*cmd, "unfreeze", path], capture_output=True, text=True, env=env)
    assert refused.returncode == 2 and "was interrupted" in refused.stderr

    resumed = subprocess.run(
        [*cmd, "unfreeze", path, "--resume"], capture_output=True, text=True, env=env
    )
    assert resumed.returncode == 0, resumed.stderr
    state = json.loads((run / "unfreeze" / "stage.json").read_text())
    assert state["status"] == "finished"
    assert state["resumed_from_epoch"] >= 2  # the finished epochs were not redone
    with (run / "unfreeze" / "history.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == list(range(epochs))
    assert (run / "unfreeze" / "model.keras").is_file()
    return run, path
