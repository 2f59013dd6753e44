"""tf.distribute on a CPU-only machine: MirroredStrategy over 2 logical CPU devices
(TLCLI_CPU_DEVICES=2) and MultiWorkerMirroredStrategy over 2 local worker processes.

Strategies configure the TensorFlow runtime once per process, so every training run here is a
fresh subprocess. Workers listen on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import config_dict, make_image_folder, run_subprocess

from tlcli.config import RunConfig
from tlcli.errors import ConfigError, RunError
from tlcli.runtime import distribute
from tlcli.runtime.distribute import is_chief_task, read_tf_config, start_distribution

TIMEOUT = 240  # seconds for one subprocess; the tests take a fraction of it
QUIET_TF = {"TF_CPP_MIN_LOG_LEVEL": "2"}

# Runs `tlcli ...` and records every write-like call (open for writing, rename, mkdir, remove,
# temp files) under WATCHED, through Python's audit hooks, into LOG at exit.
AUDITED_CLI = """
import atexit, json, os, sys
from pathlib import Path

watched, log = Path(sys.argv[1]).resolve(), sys.argv[2]
writes = []

def record(path):
    if isinstance(path, (str, bytes, os.PathLike)):
        path = Path(os.fsdecode(path)).resolve()
        if path == watched or watched in path.parents:
            writes.append(str(path))

def hook(event, args):
    if event == "open":
        path, mode, flags = args
        writing = any(c in mode for c in "wax+") if isinstance(mode, str) else (
            flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        if writing:
            record(path)
    elif event == "os.rename":
        record(args[1])
    elif event in ("os.mkdir", "os.remove", "shutil.rmtree", "tempfile.mkstemp"):
        record(args[0])

atexit.register(lambda: Path(log).write_text(json.dumps(writes)))
sys.addaudithook(hook)
sys.argv = ["tlcli", *sys.argv[3:]]
from tlcli.cli import main
main()
"""

# A stage interrupted after its first epoch (its backup saved), then resumed in the same process.
INTERRUPT_THEN_RESUME = """
import sys
from tlcli.train import fitting as training, stages
from tlcli.config import load_config
from tlcli.console import Console

class Interrupted(Exception):
    pass

save_backup = training.EpochBackup.on_epoch_end

def stop_after_first_epoch(self, epoch, logs=None):
    save_backup(self, epoch, logs)
    if epoch == 0:
        raise Interrupted

training.EpochBackup.on_epoch_end = stop_after_first_epoch
cfg = load_config(sys.argv[1])
try:
    stages.finetune(cfg, "new", Console(quiet=True))
    raise SystemExit("the stage was not interrupted")
except Interrupted:
    pass
training.EpochBackup.on_epoch_end = save_backup
result = stages.finetune(cfg, "resume", Console(quiet=True))
print("resumed", result.epochs)
"""


def _tiny_config(tmp_path: Path, **sections) -> dict:
    root = make_image_folder(tmp_path / "data", {"train": 6, "val": 2, "test": 2}, size=32)
    return config_dict(root, **{"finetune": {"epochs": 1}, **sections})


def _stage_state(tmp_path: Path, stage: str) -> dict:
    return json.loads((tmp_path / "runs" / "t" / stage / "stage.json").read_text())


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _tf_config(ports: list[int], index: int) -> str:
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    return json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})


def _run_workers(
    commands: list[list[str]], envs: list[dict]
) -> tuple[list[subprocess.CompletedProcess], list[int]]:
    """Start every worker, wait for all (killing all on timeout); their results and pids."""
    processes = [
        subprocess.Popen(
            command,
            env={**os.environ, **QUIET_TF, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command, env in zip(commands, envs, strict=True)
    ]
    results = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=TIMEOUT)
            results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return results, [process.pid for process in processes]


# --------------------------------------------------------------------------------- TF_CONFIG


@pytest.mark.fast
def test_tf_config_is_read_and_the_chief_is_worker_0():
    text = _tf_config([2222, 2223], 1)
    cluster, task = read_tf_config(text)
    assert task == ("worker", 1)
    assert is_chief_task(cluster, "worker", 0) and not is_chief_task(cluster, "worker", 1)
    with_chief = {"chief": ["a:1"], "worker": ["b:1"]}
    assert is_chief_task(with_chief, "chief", 0) and not is_chief_task(with_chief, "worker", 0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "TF_CONFIG is not set"),
        ("{cluster:", "not valid JSON"),
        ('{"task": {"type": "worker", "index": 0}}', "has no cluster"),
        ('{"cluster": {"ps": ["a:1"]}, "task": {"type": "ps", "index": 0}}', "'ps' job"),
        ('{"cluster": {"worker": ["a"]}, "task": {"type": "worker", "index": 0}}', "host:port"),
        ('{"cluster": {"worker": ["a:1"]}}', "needs a task"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}', "0 to 0"),
    ],
)
@pytest.mark.fast
def test_a_bad_tf_config_is_a_config_error(text, message):
    with pytest.raises(ConfigError, match=message):
        read_tf_config(text)


def test_multi_worker_without_tf_config_exits_2_with_an_example(tmp_path, write_config):
    path = write_config(_tiny_config(tmp_path))
    env = {"TF_CONFIG": ""}
    result = run_subprocess(
        "finetune", path, "--set", "run.distribution=multi_worker", env=env, timeout=TIMEOUT
    )
    assert result.returncode == 2, result.stderr
    assert "TF_CONFIG is not set" in result.stderr and '"cluster"' in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.fast
def test_tpu_without_a_reachable_tpu_is_a_run_error(monkeypatch):
    monkeypatch.delenv("TPU_NAME", raising=False)
    monkeypatch.setattr(distribute, "_started", None)  # as in a fresh process
    with pytest.raises(RunError, match="no TPU is reachable"):
        start_distribution(RunConfig(distribution="tpu"))


# -------------------------------------------------------------------------- MirroredStrategy


@pytest.mark.slow  # 20-40 s
def test_mirrored_finetune_and_unfreeze_use_two_cpu_replicas(tmp_path, write_config):
    config = _tiny_config(
        tmp_path,
        finetune={"epochs": 1, "cache": "on"},
        unfreeze={"layers": 4, "epochs": 1, "cache": "on"},
        run={"distribution": "mirrored"},
    )
    result = run_subprocess(
        "run", write_config(config), env={"TLCLI_CPU_DEVICES": "2"}, timeout=TIMEOUT
    )
    assert result.returncode == 0, result.stderr
    assert "MirroredStrategy, 2 replicas" in result.stdout
    for stage in ("finetune", "unfreeze"):
        state = _stage_state(tmp_path, stage)
        assert state["status"] == "finished"
        assert state["runtime"]["strategy"] == "MirroredStrategy"
        assert state["runtime"]["replicas"] == 2
        assert state["cache"]["used"], "the cached top trains under the strategy too"
        assert (tmp_path / "runs" / "t" / stage / "model.keras").is_file()


@pytest.mark.slow  # 20-40 s
def test_mirrored_stage_resumes_from_its_backup(tmp_path, write_config):
    # cache off: the whole model trains, and its optimizer state is restored under the strategy
    config = _tiny_config(
        tmp_path, finetune={"epochs": 2, "cache": "off"}, run={"distribution": "mirrored"}
    )
    result = subprocess.run(
        [sys.executable, "-c", INTERRUPT_THEN_RESUME, str(write_config(config))],
        env={**os.environ, **QUIET_TF, "TLCLI_CPU_DEVICES": "2"},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    state = _stage_state(tmp_path, "finetune")
    assert state["resumed_from_epoch"] == 1 and state["epochs"] == 2
    assert state["runtime"]["replicas"] == 2


# ---------------------------------------------------------------- MultiWorkerMirroredStrategy


@pytest.mark.slow  # 20-40 s
def test_two_local_workers_train_and_only_the_chief_writes(tmp_path, write_config):
    path = write_config(_tiny_config(tmp_path, run={"distribution": "multi_worker"}))
    run = tmp_path / "runs" / "t"
    ports = _free_ports(2)
    commands, envs = [], []
    for index in range(2):
        log = tmp_path / f"writes-{index}.json"
        commands.append([sys.executable, "-c", AUDITED_CLI, str(run), str(log), "finetune", path])
        scratch = tmp_path / f"tmp-{index}"
        scratch.mkdir()
        envs.append({"TF_CONFIG": _tf_config(ports, index), "TMPDIR": str(scratch)})

    (chief, other), (chief_pid, _) = _run_workers(commands, envs)

    assert chief.returncode == 0, chief.stderr
    assert other.returncode == 0, other.stderr
    for result in (chief, other):
        assert "MultiWorkerMirroredStrategy, 2 replicas on 2 workers" in result.stdout
    state = _stage_state(tmp_path, "finetune")
    assert state["status"] == "finished" and state["epochs"] == 1
    assert state["runtime"]["workers"] == 2 and state["runtime"]["replicas"] == 2
    assert (run / "finetune" / "model.keras").is_file()

    chief_writes = json.loads((tmp_path / "writes-0.json").read_text())
    other_writes = json.loads((tmp_path / "writes-1.json").read_text())
    assert str(run / "finetune" / "model.keras") in chief_writes  # the hook sees writes
    assert other_writes == [], other_writes
    event_files = list((run / "finetune" / "logs").rglob("*tfevents*"))
    # TensorBoard writes from C++; its file names carry the writer's pid
    assert event_files and all(f".{chief_pid}." in f.name for f in event_files)
    assert not any((tmp_path / "tmp-1").iterdir()), "the non-chief's scratch folder is removed"


@pytest.mark.slow
def test_two_local_workers_resume_from_the_chiefs_backup(tmp_path, write_config):
    path = write_config(
        _tiny_config(tmp_path, finetune={"epochs": 2}, run={"distribution": "multi_worker"})
    )
    ports = _free_ports(2)
    commands = [[sys.executable, "-c", INTERRUPT_THEN_RESUME, str(path)]] * 2
    envs = [{"TF_CONFIG": _tf_config(ports, index)} for index in range(2)]

    results, _ = _run_workers(commands, envs)

    for result in results:
        assert result.returncode == 0, result.stderr
        assert "resumed 2" in result.stdout
    state = _stage_state(tmp_path, "finetune")
    assert state["resumed_from_epoch"] == 1 and state["epochs"] == 2
    assert state["runtime"]["workers"] == 2
