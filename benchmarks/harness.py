"""What every suite shares: where things are, launching and timing processes, the machine a
result was measured on, and writing and finding result files.

A result file is `benchmarks/results/<suite>/<date>-<commit>.json`:

    {"suite": "scale", "label": "synthetic", "synthetic": true,
     "environment": {"commit": ..., "tlcli": ..., "tensorflow": ..., "keras": ...,
                     "python": ..., "cpu": ..., "cores": ..., "date": ...},
     "command": "python -m benchmarks scale --synthetic", "settings": {...}, "results": {...}}

`label` says which table rows a result fills: `python -m benchmarks report` renders, for each
suite, the newest result of each label.

>>> slug("A: hymenoptera x8, 160 px")
'a-hymenoptera-x8-160-px'
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SHARED = REPO.parent / "shared"
SHARED_WEIGHTS = (
    SHARED / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
)
SHARED_DATASETS = SHARED / "datasets"


class BenchError(Exception):
    """A step of a benchmark failed; the message says which and where its log is."""


class BenchSkip(Exception):
    """A suite cannot run on this machine (a program or driver is missing); the message says
    what to install. Nothing is recorded."""


def note(message: str) -> None:
    """Progress on stderr, so that stdout holds the suite's table only."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def need_shared(*paths: Path) -> None:
    """Stop with one line when a suite needs ../shared and it is not there."""
    missing = [path for path in paths if not path.exists()]
    if missing:
        raise BenchError(
            f"{missing[0]}: not found (this mode needs ../shared beside the repository; "
            "--synthetic runs on images the suite makes itself)"
        )


def tlcli_command(*words: str | Path) -> list[str]:
    """`tlcli WORDS...` as this Python runs it (the same `main()` as the `tlcli` script)."""
    return [sys.executable, "-m", "tlcli", *map(str, words)]


def module_command(module: str, *words: str | Path) -> list[str]:
    """A benchmark helper run as its own process, e.g. `python -m benchmarks.plain_keras`."""
    return [sys.executable, "-m", f"benchmarks.{module}", *map(str, words)]


def cli_options(**values) -> list[str]:
    """image_size=64 -> ["--image-size", "64"]; True -> a bare flag; None and False -> nothing.

    >>> cli_options(image_size=64, augment=True, views=None)
    ['--image-size', '64', '--augment']
    """
    options = []
    for key, value in values.items():
        if value is None or value is False:
            continue
        options.append("--" + key.replace("_", "-"))
        if value is not True:
            options.append(str(value))
    return options


# ---------------------------------------------------------------------------------- processes


@dataclass
class ChildRun:
    """One subprocess: what ran, when it was launched, how long it took, its peak memory."""

    name: str
    command: list[str]
    launch_at: float  # time.time() just before the launch, to compare with the child's clocks
    seconds: float  # wall time from launch to exit
    max_rss_mb: float
    log: str


def run_child(
    name: str,
    command: list[str],
    logs: Path,
    shown: list[str] | None = None,
    on_start=None,
) -> ChildRun:
    """Run `command` from the repository root, its output in logs/<name>.log; raise if it fails.

    `shown` is what the progress line prints instead of the command; `on_start(pid)` runs
    right after the launch (e.g. to sample the child's memory from /proc).
    """
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    note(f"{name}: {shlex.join(shown or command)}")
    with log.open("w") as out:
        launch_at = time.time()
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        if on_start is not None:
            on_start(process.pid)
        # wait4 reaps this child and returns its own rusage; getrusage(RUSAGE_CHILDREN) would
        # only give the largest peak among all children so far.
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-15:])
        raise BenchError(f"{name} exited with {code}; see {log}\n{tail}")
    # ru_maxrss is in kilobytes on Linux, in bytes on macOS.
    rss_mb = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
    note(f"{name}: {seconds:.1f} s, peak RSS {rss_mb:.0f} MB")
    return ChildRun(name, command, launch_at, seconds, rss_mb, str(log))


def median_seconds(action, repeats: int) -> float:
    """Median seconds of `action()` over `repeats` calls, after one warm-up call."""
    action()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    times.sort()
    middle = len(times) // 2
    return times[middle] if len(times) % 2 else (times[middle - 1] + times[middle]) / 2


# -------------------------------------------------------------------------------- environment


def environment() -> dict:
    """The commit, library versions and machine a result is measured on (no TensorFlow import)."""
    return {
        "commit": git_commit(),
        "tlcli": _version("tlcli"),
        "tensorflow": _version("tensorflow"),
        "keras": _version("keras"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def git_commit() -> str:
    """The checked-out commit, with `-dirty` when tracked files differ from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=10", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return (commit or "unknown") + ("-dirty" if commit and dirty else "")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


# ----------------------------------------------------------------------------- result files


def write_result(suite: str, record: dict, results: Path = RESULTS) -> Path:
    """results/<suite>/<date>-<commit>.json (then -2, -3, ... for more runs of that day)."""
    date = record["environment"]["date"][:10]
    commit = record["environment"]["commit"]
    folder = results / suite
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{date}-{commit}.json"
    number = 2
    while path.exists():
        path = folder / f"{date}-{commit}-{number}.json"
        number += 1
    path.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def newest_by_label(suite: str, results: Path = RESULTS) -> list[dict]:
    """The newest result file of each label of a suite (by its date, then the file's own
    order: a later run of the same day is `-2`, `-3`, ...), in the order their labels sort."""
    newest: dict[str, tuple] = {}
    for path in (results / suite).glob("*.json"):
        record = json.loads(path.read_text(encoding="utf-8"))
        shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        record["file"] = shown.as_posix()
        number = re.search(r"-(\d+)\.json$", path.name)
        key = (record["environment"]["date"], int(number.group(1)) if number else 1)
        label = record.get("label", "")
        if label not in newest or key >= newest[label][0]:
            newest[label] = (key, record)
    return [newest[label][1] for label in sorted(newest)]


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
