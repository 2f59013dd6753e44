"""A sweep shared through a real PostgreSQL server, as on several machines: sweep processes in
their own working directories (and, where the test may, under their own host names) on one
study and one shared output folder; a worker killed mid-trial, the database restarted while
trials run, a worker that comes after the study is complete.

The server is PostgreSQL's own binaries (Debian's `postgresql` package; `.ci/run` installs it
where it is missing), started once per test session in a temporary folder, as `nobody` when the
tests run as root (initdb refuses root), listening on a unix socket only.
"""

from __future__ import annotations

import functools
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import config_dict, make_image_folder, run_subprocess

STALE_AFTER = 12  # sweep.stale_after: heartbeats every 2 s, a trial is stale after 12 s


class Postgres:
    """A throwaway PostgreSQL server: `url(db)` for a new database, `restart()`, `stop()`."""

    def __init__(self, bin_dir: Path, folder: Path, user: str | None) -> None:
        self.bin_dir, self.folder, self.user = bin_dir, folder, user
        self.data = folder / "data"
        with socket.socket() as probe:  # the port names the socket file; no TCP is opened
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._run("initdb", "-D", self.data, "-U", "tlcli", "--auth=trust", "--no-sync")
        self._pg_ctl("start")

    def _run(self, program: str, *args) -> str:
        command = [str(self.bin_dir / program), *map(str, args)]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{program}: {done.stdout}{done.stderr}"
        return done.stdout

    def _pg_ctl(self, action: str, *args: str) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=''"
        log = self.folder / "server.log"
        self._run("pg_ctl", action, "-D", self.data, "-l", log, "-o", options, "-w", *args)

    def url(self, database: str) -> str:
        self._run("createdb", "-h", self.folder, "-p", self.port, "-U", "tlcli", database)
        return f"postgresql://tlcli@/{database}?host={self.folder}&port={self.port}"

    def restart(self) -> None:
        self._pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        self._pg_ctl("stop", "-m", "immediate")


def _postgres_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(versions[-1]).parent if versions else None


@pytest.fixture(scope="session")
def postgres():
    pytest.importorskip("psycopg", reason="the PostgreSQL driver: pip install 'tlcli[postgres]'")
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL is not installed (pg_ctl not found; Debian: apt install postgresql)"
        )
    user = None
    folder = Path(tempfile.mkdtemp(prefix="tlcli-pg-"))
    if os.geteuid() == 0:  # initdb refuses root: the server runs as nobody
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL as nobody")
        user = "nobody"
        os.chown(folder, pwd.getpwnam(user).pw_uid, -1)
    server = Postgres(bin_dir, folder, user)
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres, request) -> str:
    return postgres.url("t_" + request.node.name.lower().replace("[", "_").strip("]")[:50])


def _own_hosts() -> bool:
    """Whether each worker can get a host name of its own (a UTS namespace, as root)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    check = subprocess.run(["unshare", "-u", "hostname", "probe"], capture_output=True)
    return check.returncode == 0


def _sweep_config(root: Path, shared: Path, trials: int, epochs: int) -> dict:
    config = config_dict(root, finetune={"epochs": epochs, "search": "off"})
    config["output_dir"] = str(shared)
    config["sweep"] = {
        "trials": trials,
        "params": {"finetune.optimizer.learning_rate": "loguniform(1e-4, 1e-2)"},
        "pruner": "none",
        "stale_after": STALE_AFTER,
    }
    return config


class Worker:
    """`tlcli sweep CONFIG --resume --storage URL` in its own folder (and host name)."""

    def __init__(self, folder: Path, config: Path, url: str, host: str | None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "tlcli", "sweep", str(config), "--resume", "--quiet"]
        command += ["--storage", url]
        if host:  # exec keeps the pid: the worker's pid is the one it records on its trials
            command = ["unshare", "-u", "sh", "-c", f'hostname {host} && exec "$@"', "sh", *command]
        self.log = folder / "output.txt"
        with self.log.open("w") as out:
            self.process = subprocess.Popen(command, cwd=folder, stdout=out, stderr=out)
        self.pid = self.process.pid

    def wait(self, timeout: float = 900) -> int:
        return self.process.wait(timeout=timeout)

    @property
    def output(self) -> str:
        return self.log.read_text()


@pytest.fixture
def three_machines(tmp_path, postgres_url):
    """A config on a shared output folder, and a function that starts worker i."""
    root = make_image_folder(tmp_path / "data", {"train": 6, "val": 3, "test": 3}, size=32)
    shared = tmp_path / "shared-runs"
    hosts = _own_hosts()
    workers: list[Worker] = []

    def start(index: int, trials: int, epochs: int) -> Worker:
        machine = tmp_path / f"machine-{index}"
        machine.mkdir(exist_ok=True)
        config = machine / "sweep.yaml"  # each machine its own copy of the config
        config.write_text(yaml.safe_dump(_sweep_config(root, shared, trials, epochs)))
        worker = Worker(machine, config, postgres_url, f"tlcli-worker-{index}" if hosts else None)
        workers.append(worker)
        return worker

    yield start, shared / "t-sweep", postgres_url
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()


@functools.cache
def _observer(url: str):
    """The test's own view of the study: Optuna alone, whatever tlcli does."""
    import optuna

    url = url.replace("postgresql://", "postgresql+psycopg://")
    return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})


def _load_study(url: str):
    import optuna

    return optuna.load_study(study_name="t", storage=_observer(url))


def test_a_bare_postgresql_url_uses_the_installed_driver(postgres_url):
    from tlcli.experiments.study import import_optuna, open_storage

    optuna = import_optuna()
    assert postgres_url.startswith("postgresql://")
    study = optuna.create_study(study_name="t", storage=open_storage(postgres_url, Path()))
    study.enqueue_trial({"x": 1.0})
    again = optuna.load_study(study_name="t", storage=open_storage(postgres_url, Path()))
    assert [t.state.name for t in again.trials] == ["WAITING"]


def test_without_the_driver_a_postgresql_storage_names_the_extra(tmp_path, write_config):
    blocker = tmp_path / "no_psycopg"
    blocker.mkdir()
    for name in ("psycopg", "psycopg2"):
        (blocker / f"{name}.py").write_text(f"raise ImportError('no {name} here', name='{name}')\n")
    env = {"PYTHONPATH": f"{blocker}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    root = make_image_folder(tmp_path / "data", {"train": 2, "val": 1, "test": 1}, size=32)
    config = write_config(_sweep_config(root, tmp_path / "runs", trials=1, epochs=1))
    url = "postgresql://tlcli@/t?host=/nonexistent"
    result = run_subprocess("sweep", config, "--resume", "--storage", url, env=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'tlcli[postgres]'" in lines[0], result.stderr


def test_a_trial_whose_heartbeat_stops_is_failed_and_requeued_once(postgres_url):
    """The heartbeat rule on Optuna's own heartbeat: a running trial whose process is alive
    but no longer beats (as a process on another machine that died) is failed by the first
    process that looks after `stale_after` seconds, and re-queued once with its values and
    slot; before that, nobody touches it."""
    from tlcli.experiments.study import (
        counted,
        heartbeat,
        import_optuna,
        is_retry,
        open_storage,
        reclaim_dead_trials,
    )

    optuna = import_optuna()
    stale_after = 3
    mine = open_storage(postgres_url, Path(), stale_after)
    study = optuna.create_study(study_name="t", storage=mine)
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    trial.set_user_attr("slot", 0)
    with heartbeat(study, trial, mine, interval=1):
        time.sleep(1.5)  # beats, then stops beating: the process is alive, its trial stale
    stopped = time.monotonic()
    # two other processes, each with its own storage (connection pool) on the study
    stores = [open_storage(postgres_url, Path(), stale_after) for _ in range(2)]
    others = [optuna.load_study(study_name="t", storage=store) for store in stores]
    assert reclaim_dead_trials(others[0], stores[0], stale_after) == []
    while time.monotonic() - stopped < stale_after + 1.5:
        time.sleep(0.25)
    found = [
        reclaim_dead_trials(o, store, stale_after) for o, store in zip(others, stores, strict=True)
    ]
    assert sorted(found, key=len) == [[], [trial.number]]
    trials = study.get_trials(deepcopy=False)
    assert [t.state.name for t in trials] == ["FAIL", "WAITING"]
    copy = trials[1]
    assert is_retry(copy) and copy.params == trial.params and copy.user_attrs["slot"] == 0
    assert counted(trials) == [trials[0]]


def _wait_for(condition, timeout: float, what: str, workers=()):
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        for worker in workers:
            assert worker.process.poll() in (None, 0), worker.output[-3000:]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def _running_mid_epoch(url: str, pids: set[int]):
    """A running trial of one of `pids` whose first epoch is backed up (it is mid-training)."""
    try:
        trials = _load_study(url).get_trials(deepcopy=False)
    except KeyError:
        return None  # no study yet
    for trial in trials:
        if trial.state.name != "RUNNING" or trial.user_attrs.get("pid") not in pids:
            continue
        backup = Path(trial.user_attrs.get("folder", "/nonexistent")) / "finetune" / "backup"
        if any(backup.glob("epoch-*.weights.h5")):
            return trial
    return None


def _check_results(study, folder: Path, budget: int) -> list[dict]:
    """Exactly `budget` trials, no slot complete twice, results.json, results.csv and best.yaml
    all from one writing, that agrees with the study."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    slots = [int(t.user_attrs["slot"]) for t in complete]
    assert len(slots) == len(set(slots)), f"a trial ran twice to completion: {sorted(slots)}"
    results = json.loads((folder / "results.json").read_text())
    rows = results["trials"]
    assert [r["trial"] for r in rows] == list(range(budget))
    assert (folder / "results.csv").read_text().count("\n") == budget + 1
    for row in rows:
        trial = trials[row["number"]]
        assert row["state"] == trial.state.name.lower()
    best = results["best"]
    assert best["number"] == study.best_trial.number
    assert best["val_accuracy"] == pytest.approx(study.best_value)
    tree = yaml.safe_load((folder / "best.yaml").read_text())
    rate = tree["finetune"]["optimizer"]["learning_rate"]
    assert rate == pytest.approx(best["finetune.optimizer.learning_rate"])
    return rows


def _summaries(workers) -> int:
    """How many workers wrote the results table (the others say another process did)."""
    return sum("best: trial" in w.output for w in workers)


@pytest.mark.slow
def test_three_machines_share_one_study_and_survive_a_worker_killed_mid_trial(three_machines):
    start, folder, url = three_machines
    budget = 6
    workers = [start(i, trials=budget, epochs=8) for i in range(3)]
    victim_trial = _wait_for(
        lambda: _running_mid_epoch(url, {w.pid for w in workers}), 600, "a trial mid-epoch",
        workers,
    )  # fmt: skip
    victim = next(w for w in workers if w.pid == victim_trial.user_attrs["pid"])
    victim.process.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = time.monotonic()
    survivors = [w for w in workers if w is not victim]

    def failed():
        trial = _load_study(url).get_trials(deepcopy=False)[victim_trial.number]
        return trial if trial.state.name == "FAIL" else None

    _wait_for(failed, 300, f"trial {victim_trial.number} to be failed", survivors)
    detected = time.monotonic() - killed_at
    for worker in survivors:
        assert worker.wait() == 0, worker.output[-3000:]

    study = _load_study(url)
    rows = _check_results(study, folder, budget)
    assert all(r["state"] == "complete" for r in rows), rows
    slot = int(victim_trial.user_attrs["slot"])
    assert rows[slot]["number"] != victim_trial.number, "the killed trial ran again as a copy"
    warned = "".join(w.output for w in survivors)
    assert f"trial {victim_trial.number}: its process stopped; re-queued" in " ".join(
        warned.split()
    )
    state = json.loads(Path(rows[slot]["folder"], "finetune", "stage.json").read_text())
    assert state["status"] == "finished" and state["resumed_from_epoch"] >= 1
    assert _summaries(survivors) == 1, [w.output[-800:] for w in survivors]
    # on hosts of their own, only the heartbeat tells the others: stale after STALE_AFTER s, seen
    # by a worker between two of its trials (a few seconds each here)
    if _own_hosts():
        assert detected >= STALE_AFTER - 2 - 1, detected
    assert detected < STALE_AFTER + 60, detected
    print(f"killed trial failed after {detected:.1f} s")  # for -s runs that measure it

    written = (folder / "results.json").stat().st_mtime_ns
    began = time.monotonic()
    late = start(3, trials=budget, epochs=8)
    assert late.wait(timeout=120) == 0, late.output
    took = time.monotonic() - began
    assert "the sweep t is complete" in " ".join(late.output.split()), late.output
    assert (folder / "results.json").stat().st_mtime_ns == written, "the late worker wrote again"
    assert took < 60, took
    print(f"late worker exited after {took:.1f} s")


@pytest.mark.slow
def test_a_database_restart_costs_at_most_the_trials_in_flight(three_machines, postgres):
    start, folder, url = three_machines
    budget = 5
    workers = [start(i, trials=budget, epochs=8) for i in range(2)]
    _wait_for(
        lambda: _running_mid_epoch(url, {w.pid for w in workers}), 600, "a trial mid-epoch",
        workers,
    )  # fmt: skip
    in_flight = sum(t.state.name == "RUNNING" for t in _load_study(url).get_trials())
    postgres.restart()
    for worker in workers:
        assert worker.wait() == 0, worker.output[-3000:]
    study = _load_study(url)
    rows = _check_results(study, folder, budget)
    failed = [r for r in rows if r["state"] != "complete"]
    assert in_flight >= 1 and not failed, rows  # the workers waited for the database
    assert _summaries(workers) == 1, [w.output[-800:] for w in workers]


def test_workers_that_start_at_once_on_an_empty_database_all_open_it(postgres_url):
    """The first process on a database creates Optuna's tables; several starting at the same
    moment race to create them, and every one of them must get the storage."""
    from tlcli.errors import ConfigError
    from tlcli.experiments.study import open_storage

    start = threading.Barrier(6)
    errors: list[str] = []

    def open_it() -> None:
        start.wait()
        try:
            open_storage(postgres_url, Path(), STALE_AFTER)
        except ConfigError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
