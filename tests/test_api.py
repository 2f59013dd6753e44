"""The library does what the command does: `tlcli.api.run` leaves the same files in a run folder
as `tlcli run`, reports and model cards included, and passes Keras callbacks on to fit."""

from __future__ import annotations

import io
from pathlib import Path

import keras
import pytest
from conftest import config_dict

from tlcli.config import load_config
from tlcli.console import Console


class EpochRecorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs: list[int] = []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(epoch)


def _files(run: Path) -> set[str]:
    """The run's files, relative to it; TensorBoard's event files carry a host and a time in
    their names, so only their folder counts."""
    names = set()
    for path in run.rglob("*"):
        relative = path.relative_to(run)
        if "logs" in relative.parts:
            names.add(str(Path(*relative.parts[: relative.parts.index("logs") + 1])))
        elif path.is_file():
            names.add(str(relative))
    return names


@pytest.mark.slow
def test_api_run_writes_what_tlcli_run_writes_and_passes_callbacks_to_fit(
    image_folder, write_config, cli
):
    settings = config_dict(image_folder, finetune={"epochs": 2, "search": "off"})
    by_cli = write_config({**settings, "name": "cli"}, "cli.yaml")
    by_python = write_config({**settings, "name": "python"}, "python.yaml")

    result = cli("run", by_cli, "--quiet")
    assert result.exit_code == 0, result.output

    from tlcli import api

    recorder = EpochRecorder()
    api.run(
        load_config(by_python),
        console=Console(quiet=True, file=io.StringIO()),
        callbacks=[recorder],
    )

    runs = image_folder.parent / "runs"
    cli_files, python_files = _files(runs / "cli"), _files(runs / "python")
    assert {"report.html", "finetune/MODEL_CARD.md", "finetune/errors.csv"} <= python_files
    assert python_files == cli_files
    assert recorder.epochs == [0, 1]
