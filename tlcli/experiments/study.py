"""The Optuna study behind a sweep: where it is stored, how it samples and prunes, and how the
processes working on it keep their trials apart.

Storage: by default a journal file in the sweep folder (`<sweep>/study.journal`), so a sweep
killed at any moment resumes; otherwise an Optuna RDB URL (`postgresql://...`, `sqlite:///...`)
or the path of a journal file on a filesystem every process sees. Several processes (or
machines) on one storage share the trial budget: none runs a trial another one runs.

A running trial records its process (host, pid) and a heartbeat every few seconds in its user
attributes. A trial whose process is gone (same host, no such pid) or whose heartbeat is older
than `sweep.stale_after` seconds is marked failed and re-queued with the same values; the
process that takes it resumes its run folder from the last epoch backup. A trial is re-queued
at most MAX_ATTEMPTS - 1 times (a trial that keeps killing its process stays failed).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tlcli.config import Config, flatten
from tlcli.config.sweep import SweepConfig
from tlcli.errors import ConfigError, Remedy
from tlcli.experiments.space import grid_space

HOST = socket.gethostname()
MAX_ATTEMPTS = 3
# Keys that may change when a sweep resumes or another process joins it.
MAY_CHANGE = ("sweep.trials", "sweep.stale_after", "sweep.evaluate", "output_dir", "cache_dir")


def import_optuna():
    """Optuna, quiet; a one-line ConfigError naming the extra when it is not installed."""
    try:  # the optional `sweep` extra
        import optuna
    except ImportError:
        raise ConfigError(
            "tlcli sweep needs Optuna, an optional extra: pip install 'tlcli[sweep]'"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def open_storage(storage: str | None, sweep_dir: Path):
    """An Optuna storage: an RDB URL, a journal file path, or (None) the sweep's own journal."""
    optuna = import_optuna()
    if storage is None or "://" not in storage:
        path = Path(storage) if storage else sweep_dir / "study.journal"
        path.parent.mkdir(parents=True, exist_ok=True)
        journal = optuna.storages.journal
        return journal.JournalStorage(journal.JournalFileBackend(str(path)))
    try:
        return optuna.storages.RDBStorage(storage)
    except Exception as exc:  # SQLAlchemy raises many kinds; each means "cannot use this URL"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"storage {storage}: cannot open it: {first}") from None


def open_study(cfg: Config, storage, mode: str):
    """Create the study, or join it (mode resume); the config must be the study's own."""
    optuna = import_optuna()
    sweep: SweepConfig = cfg.sweep
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if cfg.name in names and mode == "overwrite":
        optuna.delete_study(study_name=cfg.name, storage=storage)
    elif cfg.name in names and mode == "new":
        raise ConfigError(
            f"a sweep named {cfg.name} already exists in its storage",
            remedies=(
                Remedy("mode=resume", "continue it (finished trials are kept)"),
                Remedy("mode=overwrite", "start again"),
                Remedy("name"),
            ),
        )
    study = optuna.create_study(
        study_name=cfg.name,
        storage=storage,
        direction="maximize" if sweep.maximize else "minimize",
        pruner=make_pruner(sweep),
        load_if_exists=True,
    )
    described = _described(cfg)
    recorded = study.user_attrs.get("config")
    if recorded is None:
        study.set_user_attr("config", described)
    else:
        changed = sorted(
            k for k in set(recorded) | set(described) if recorded.get(k) != described.get(k)
        )
        if changed:
            raise ConfigError(
                f"{cfg.source}: the sweep {cfg.name} was started with another config "
                f"(changed: {', '.join(changed[:5])})",
                remedies=(Remedy("mode=overwrite", "start again"), Remedy("name")),
            )
    return study


def _described(cfg: Config) -> dict[str, Any]:
    flat = flatten(cfg.model_dump(mode="json"))
    return {k: v for k, v in flat.items() if not k.startswith(MAY_CHANGE)}


def make_sampler(sweep: SweepConfig, seed: int, trial_number: int):
    """The sampler for one trial, seeded by the trial number: a sweep repeats alone, and two
    processes never draw the same values. The grid's order follows the seed alone (every
    process must see the same grid)."""
    optuna = import_optuna()
    if sweep.sampler == "grid":
        return optuna.samplers.GridSampler(grid_space(sweep), seed=seed)
    if sweep.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed + trial_number)
    return optuna.samplers.TPESampler(seed=seed + trial_number)


def make_pruner(sweep: SweepConfig):
    optuna = import_optuna()
    if sweep.pruner == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)


# ----------------------------------------------------------------------- the trial budget


def counted(trials: list) -> list:
    """The trials that count towards the budget: not re-queued copies, not surplus asks."""
    return [t for t in trials if "retry_of" not in t.user_attrs and not t.user_attrs.get("surplus")]


def slot(trial) -> int:
    """The trial's place in the budget (0, 1, ...), which names its run folder; a re-queued
    copy keeps the place, and the folder, of the trial it retries."""
    return int(trial.user_attrs.get("slot", trial.number))


# ------------------------------------------------------------------ heartbeats, dead trials


@contextlib.contextmanager
def heartbeat(trial, interval: float) -> Iterator[None]:
    """Record this process and a heartbeat on the running trial until the block ends."""
    optuna = import_optuna()
    trial.set_user_attr("host", HOST)
    trial.set_user_attr("pid", os.getpid())
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                trial.set_user_attr("heartbeat", time.time())
            except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError, ValueError):
                return  # another process decided this trial was dead: nothing left to beat
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name="tlcli-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def reclaim_dead_trials(study, stale_after: float) -> list[int]:
    """Fail the running trials whose process is gone and re-queue them; returns their numbers.

    Two processes may find the same dead trial: the storage lets only one of them fail it.
    """
    optuna = import_optuna()
    TrialState = optuna.trial.TrialState
    storage = study._storage  # Optuna's own fail_stale_trials works through it too
    reclaimed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _is_dead(trial, stale_after):
            continue
        try:
            if not storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process failed it first, and re-queues it
        attempt = int(trial.user_attrs.get("attempt", 1))
        if attempt < MAX_ATTEMPTS:
            study.enqueue_trial(
                trial.params,
                user_attrs={"retry_of": trial.number, "slot": slot(trial), "attempt": attempt + 1},
                skip_if_exists=False,
            )
        reclaimed.append(trial.number)
    return reclaimed


def _is_dead(trial, stale_after: float) -> bool:
    attrs = trial.user_attrs
    if attrs.get("host") == HOST and "pid" in attrs and not _pid_alive(int(attrs["pid"])):
        return True
    started = trial.datetime_start.timestamp() if trial.datetime_start else time.time()
    return time.time() - float(attrs.get("heartbeat", started)) > stale_after


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, another user's
    return True
