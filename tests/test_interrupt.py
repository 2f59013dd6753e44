"""Ctrl-C on a terminal: the message starts on its own line, under the progress bar, and names
the exact command that continues the run, which does. (That a resumed stage ends exactly as an
uninterrupted one is tests/test_exact_resume.py's; in a new process, test_resume.py's.)"""

from __future__ import annotations

import json
import sys

from conftest import config_dict, make_image_folder, run_on_a_terminal, shown_resume_command

EPOCHS = 30  # short epochs on cached features: many, so that the interrupt lands in training


def test_ctrl_c_names_the_command_that_resumes_it(tmp_path, write_config, cli):
    root = make_image_folder(tmp_path / "data", {"train": 8, "val": 2}, size=32)
    config = config_dict(
        root,
        data={"test_dir": None, "batch_size": 4, "augment": {"flip": "horizontal"}},
        model={"base": "vgg16", "weights": "none", "head": {"dense": [8], "dropout": 0.5}},
        finetune={"epochs": 2, "cache_views": 2},
    )
    path = write_config(config)
    overrides = [f"finetune.epochs={EPOCHS}", "model.head.dense=[8]"]
    backup = tmp_path / "runs" / "t" / "finetune" / "backup"
    command = [sys.executable, "-m", "tlcli", "finetune", str(path)]
    for override in overrides:
        command += ["--set", override]

    code, shown = run_on_a_terminal(
        [*command, "--overwrite"], lambda: any(backup.glob("epoch-*.weights.h5"))
    )

    resume = shown_resume_command(code, shown)
    assert resume == ["tlcli", *command[3:], "--resume"]
    resumed = cli(*resume[1:])
    assert resumed.exit_code == 0, resumed.output
    state = json.loads((backup.parent / "stage.json").read_text())
    assert state["status"] == "finished" and 0 < state["resumed_from_epoch"] < EPOCHS
    history = (backup.parent / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == [str(e) for e in range(EPOCHS)]
