"""Ctrl-C on a terminal: the message starts on its own line, under the progress bar, and names
the exact command that continues the run, which does. (That a resumed stage ends exactly as an
uninterrupted one is tests/test_exact_resume.py's; in a new process, test_resume.py's.)"""

from __future__ import annotations

import json
import os
import pty
import re
import shlex
import signal
import subprocess
import sys
import threading
import time

from conftest import config_dict, make_image_folder

EPOCHS = 30  # short epochs on cached features: many, so that the interrupt lands in training


def _as_in_a_terminal() -> None:
    """SIGINT as a terminal's foreground process has it. A suite started in the background by
    a shell without job control (a CI script's `cmd &`) inherits SIGINT ignored, and Python then
    installs no KeyboardInterrupt handler: Ctrl-C would do nothing, as it should there."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_on_a_terminal(command: list[str], interrupt_when) -> tuple[int, str]:
    """Run `command` with a pseudo-terminal as stdout and stderr; SIGINT once
    `interrupt_when()` holds. Returns the exit code and everything the terminal showed."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal, close_fds=True,
        preexec_fn=_as_in_a_terminal,
    )  # fmt: skip
    os.close(terminal)
    shown = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal closed: the process is gone
                return
            if not chunk:
                return
            shown.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 300
    while not interrupt_when():
        assert process.poll() is None, shown.decode(errors="replace")
        assert time.monotonic() < deadline, "the stage did not get going in time"
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    code = process.wait(timeout=120)
    reader.join(timeout=10)
    os.close(controller)
    return code, shown.decode(errors="replace").replace("\r\n", "\n")


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

    assert code == 130, shown
    found = re.search(r"\ninterrupted; to continue where it stopped:\n  (tlcli .*)\n", shown)
    assert found, f"no resume command on a line of its own in:\n{shown[-600:]}"
    resume = shlex.split(found.group(1))
    assert resume == ["tlcli", *command[3:], "--resume"]
    resumed = cli(*resume[1:])
    assert resumed.exit_code == 0, resumed.output
    state = json.loads((backup.parent / "stage.json").read_text())
    assert state["status"] == "finished" and 0 < state["resumed_from_epoch"] < EPOCHS
    history = (backup.parent / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == [str(e) for e in range(EPOCHS)]
