"""Trials per minute of one head-only sweep shared by 1, 2 and 3 workers through PostgreSQL.

    python -m benchmarks sweep-workers                # hymenoptera, VGG16 32 px, 12 trials
    python -m benchmarks sweep-workers --synthetic
    python -m benchmarks sweep-workers --synthetic --trials 6 --workers 1 2

For each worker count N, N processes `tlcli sweep CONFIG --resume --storage postgresql://...`
are launched at once, each in its own working directory with its own copy of the config (as on
N machines), on one new database and one shared output folder: all of them share the one
feature cache, built by whichever trial comes first. Trials are head-only on cached features
(`finetune.search: off`, no pruner, so that every trial does the same work): random weights
(`weights: none`) by default, since the time does not depend on their values.

It reports, for each N, the trials per minute overall (completed trials over the wall from the
launch to the last worker's exit) and after start-up (the completions after the first N, one
per worker, which carry its TensorFlow start and, for the first, building the feature cache;
over the time from the N-th completion to the last), each as a ratio to the 1-worker row. The
1-worker row is the reference: a plain Keras script fitting the same heads one after the other
in one process is what one worker does, without a database to share.

The database is a throwaway PostgreSQL server from the installed binaries (Debian's
`postgresql` package), in a temporary folder, listening on a unix socket only, run as `nobody`
when this runs as root (initdb refuses root). Without the binaries or the driver the suite
skips with one line. On a 2-core machine the workers compete for the cores: the ratio says what
a second and third process buy there, not what more machines would.
"""

from __future__ import annotations

import argparse
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.harness import SHARED_DATASETS, BenchError, BenchSkip, need_shared, note
from benchmarks.synthetic import make_dataset

NAME = "tput"  # the config's name: the study's name, and the sweep folder's prefix


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=SHARED_DATASETS / "hymenoptera")
    parser.add_argument("--base", default="vgg16")
    parser.add_argument("--weights", default="none")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2, 3], help="one sweep per count N"
    )


def label(args: argparse.Namespace) -> str:
    data = "synthetic" if args.synthetic else args.data.name
    return (
        f"{data}, {args.base}, {args.image_size} px, {args.trials} trials of {args.epochs} epochs"
    )


def config(args: argparse.Namespace, output_dir: Path) -> dict:
    data = {"train_dir": str(args.data / "train"), "image_size": [args.image_size] * 2}
    if (args.data / "val").is_dir():  # hymenoptera's val/ serves as its test split
        data["test_dir"] = str(args.data / "val")
    return {
        "name": NAME,
        "output_dir": str(output_dir),
        "seed": 1,
        "data": data,
        "model": {"base": args.base, "weights": args.weights},
        "finetune": {"epochs": args.epochs, "search": "off"},
        "sweep": {
            "trials": args.trials,
            "params": {"finetune.optimizer.learning_rate": "loguniform(1e-4, 1e-2)"},
            "pruner": "none",
        },
    }


# ------------------------------------------------------------------------------- the server


class Postgres:
    """A throwaway PostgreSQL server: `url(db)` makes a new database; `stop()`."""

    def __init__(self, bin_dir: Path, folder: Path, user: str | None) -> None:
        self.bin_dir, self.folder, self.user = bin_dir, folder, user
        self.data = folder / "data"
        with socket.socket() as probe:  # the port names the socket file; no TCP is opened
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._run("initdb", "-D", self.data, "-U", "tlcli", "--auth=trust", "--no-sync")
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=''"
        log = self.folder / "server.log"
        self._run("pg_ctl", "start", "-D", self.data, "-l", log, "-o", options, "-w")

    def _run(self, program: str, *args) -> None:
        command = [str(self.bin_dir / program), *map(str, args)]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise BenchError(f"{program} exited with {done.returncode}: {done.stderr.strip()}")

    def url(self, database: str) -> str:
        self._run("createdb", "-h", self.folder, "-p", self.port, "-U", "tlcli", database)
        return f"postgresql://tlcli@/{database}?host={self.folder}&port={self.port}"

    def stop(self) -> None:
        self._run("pg_ctl", "stop", "-D", self.data, "-m", "immediate", "-w")


def postgres_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(versions[-1]).parent if versions else None


def start_server() -> Postgres:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise BenchSkip(
            "the PostgreSQL driver is not installed (pip install 'tlcli[postgres]')"
        ) from None
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise BenchSkip(
            "PostgreSQL is not installed (pg_ctl not found; Debian: apt install postgresql)"
        )
    folder = Path(tempfile.mkdtemp(prefix="tlcli-pg-"))
    user = None
    if os.geteuid() == 0:  # initdb refuses root: the server runs as nobody
        if shutil.which("runuser") is None:
            raise BenchSkip("running as root without runuser: cannot start PostgreSQL as nobody")
        user = "nobody"
        os.chown(folder, pwd.getpwnam(user).pw_uid, -1)
    return Postgres(bin_dir, folder, user)


# ---------------------------------------------------------------------------- the measure


def run(args: argparse.Namespace) -> dict:
    if not args.synthetic:
        need_shared(args.data)
    server = start_server()
    work = Path(tempfile.mkdtemp(prefix="sweep_workers_"))
    try:
        if args.synthetic:
            args.data = make_dataset(work / "data", {"train": 20, "val": 6})
        load_before = os.getloadavg()
        rows = {}
        for count in args.workers:
            rows[f"workers={count}"] = measure(
                server, config(args, work / f"runs-{count}"), work, count
            )
    finally:
        server.stop()
        shutil.rmtree(server.folder, ignore_errors=True)
    reference = rows.get("workers=1")
    print(f"{'workers':>8}{'trials':>8}{'wall s':>9}  {'trials / min':<18}after start-up")
    for name, row in rows.items():
        overall = rate(row, reference, "per_minute")
        steady = rate(row, reference, "per_minute_after_startup")
        print(
            f"{name.split('=')[1]:>8}{row['completed']:>8}{row['wall_seconds']:>9.1f}"
            f"  {overall:<18}{steady}"
        )
    load = {"before": load_before, "after": os.getloadavg()}
    before, after = (" ".join(f"{v:.2f}" for v in load[k]) for k in ("before", "after"))
    print(f"load average (1, 5, 15 min): before {before}, after {after}")
    return {"cpu_count": os.cpu_count(), "load_average": load, "rows": rows}


def measure(server: Postgres, cfg: dict, work: Path, count: int) -> dict:
    url = server.url(f"{NAME}{count}")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    processes, logs = [], []
    note(f"{count} worker(s) on {url}")
    began = time.time()
    for index in range(count):
        machine = work / f"w{count}-{index}"
        machine.mkdir(parents=True)
        path = machine / "sweep.yaml"  # each machine its own copy of the config
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        command = [sys.executable, "-m", "tlcli", "sweep", str(path), "--resume", "--quiet"]
        log = machine / "output.txt"
        with log.open("w") as out:
            processes.append(
                subprocess.Popen(
                    [*command, "--storage", url], cwd=machine, stdout=out, stderr=out, env=env
                )
            )
        logs.append(log)
    codes = [process.wait() for process in processes]
    wall = time.time() - began
    for code, log in zip(codes, logs, strict=True):
        if code != 0:
            tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-15:])
            raise BenchError(f"a worker exited with {code}; see {log}\n{tail}")
    done = completions(url)
    steady = None
    if len(done) > count and done[-1] > done[count - 1]:
        steady = (len(done) - count) / ((done[-1] - done[count - 1]) / 60)
    note(f"{count} worker(s): {len(done)} trials in {wall:.1f} s")
    return {
        "completed": len(done),
        "wall_seconds": round(wall, 1),
        "per_minute": round(len(done) / wall * 60, 2),
        "per_minute_after_startup": steady and round(steady, 2),
        "first_completion_seconds": round(done[0] - began, 1) if done else None,
    }


def completions(url: str) -> list[float]:
    """When each completed trial of the study finished, as Optuna recorded it, in order."""
    import optuna

    storage = optuna.storages.RDBStorage(url.replace("postgresql://", "postgresql+psycopg://"))
    study = optuna.load_study(study_name=NAME, storage=storage)
    states = optuna.trial.TrialState
    return sorted(
        t.datetime_complete.timestamp() for t in study.trials if t.state == states.COMPLETE
    )


def rate(row: dict, reference: dict | None, key: str) -> str:
    """`row[key]`, with its ratio to the reference row's when there is one to compare."""
    value = row[key]
    if value is None:
        return "-"
    if reference is None or reference is row or not reference[key]:
        return f"{value:.2f}"
    return f"{value:.2f} ({value / reference[key]:.2f}x)"


def render(records: list[dict]) -> str:
    """Trials per minute with N workers, overall and after start-up, against 1 worker."""
    lines = [
        "| setting | workers | trials | wall | trials / min | after start-up "
        "| load, 1 min: before / after |",
        "|---|---|---|---|---|---|---|",
    ]
    for record in records:
        results = record["results"]
        rows = results["rows"]
        reference = rows.get("workers=1")
        load = results["load_average"]
        for name, row in rows.items():
            lines.append(
                f"| {record['label']} | {name.split('=')[1]} | {row['completed']} "
                f"| {row['wall_seconds']:.0f} s | {rate(row, reference, 'per_minute')} "
                f"| {rate(row, reference, 'per_minute_after_startup')} "
                f"| {load['before'][0]:.1f} / {load['after'][0]:.1f} |"
            )
    return "\n".join(lines)
