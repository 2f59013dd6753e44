"""Imports sit at the top of their modules, and TensorFlow loads only when a command needs it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO

# A config that fails validation, and every command that reads one: each says so without loading
# TensorFlow (seconds of start-up, for a typo).
COMMANDS = ("run", "pretrain", "finetune", "unfreeze", "evaluate", "sweep", "doctor", "lr-find")
PROBE = """
import sys
from typer.testing import CliRunner
from tlcli.cli import app

for command in {commands}:
    result = CliRunner().invoke(app, [command, {config!r}])
    assert result.exit_code == 2, (command, result.output)
    assert "finetune.epochs" in result.output, (command, result.output)
    loaded = [name for name in ("tensorflow", "keras") if name in sys.modules]
    assert not loaded, f"{{command}}: a config error loaded {{loaded}}"
import tlcli.train, tlcli.train.metrics, tlcli.train.plots, tlcli.train.search_conditions
assert "tensorflow" not in sys.modules, "a light module of tlcli.train loaded TensorFlow"
print("ok")
"""


@pytest.fixture
def bad_config(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        f"data: {{train_dir: {REPO / 'sample_data/target/train'}}}\n"
        "model: {base: vgg16}\nfinetune: {epochs: 0}\n"
    )
    return path


def test_config_errors_and_light_modules_load_no_tensorflow(bad_config):
    probe = PROBE.format(commands=COMMANDS, config=str(bad_config))
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout.strip() == "ok", done.stderr[-2000:]
