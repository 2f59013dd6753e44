"""The Optuna study behind a sweep: where it is stored, how it samples and prunes, and how the
processes working on it keep their trials apart.

Storage: by default a journal file in the sweep folder (`<sweep>/study.journal`), so a sweep
killed at any moment resumes; otherwise an Optuna RDB URL (`postgresql://...`, `sqlite:///...`)
or the path of a journal file on a filesystem every process sees. Several processes (or
machines) on one storage share the trial budget: none runs a trial another one runs.

A running trial records its process (host, pid) in its user attributes, and a heartbeat every
`stale_after / 6` seconds (at least 1): Optuna's own on an RDB storage (`RDBStorage(
heartbeat_interval=..., grace_period=stale_after)`), a user attribute on a journal file (whose
storage has no heartbeat). A trial whose process is gone (same host, no such pid) or whose
heartbeat is older than `sweep.stale_after` seconds is failed and re-queued with the same values
by Optuna's `RetryHeartbeatStaleTrialCallback`; the process that takes it resumes its run folder
from the last epoch backup. A trial is re-queued at most MAX_ATTEMPTS - 1 times (a trial that
keeps killing its process stays failed).

A database that stops answering (a restart, a dropped connection) is waited for: each call on
the storage is retried for up to `stale_after` seconds, then the process stops with one line.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tlcli.config import Config, flatten
from tlcli.config.sweep import SweepConfig
from tlcli.errors import ConfigError, Remedy, RunError
from tlcli.experiments.space import grid_space

HOST = socket.gethostname()
MAX_ATTEMPTS = 3
# Keys that may change when a sweep resumes or another process joins it.
MAY_CHANGE = ("sweep.trials", "sweep.stale_after", "sweep.evaluate", "output_dir", "cache_dir")
# SQLAlchemy's driver for a bare postgresql:// URL differs between its versions (psycopg2 before
# 2.1, psycopg 3 since); the `postgres` extra installs psycopg 3.
POSTGRES_SCHEMES = ("postgresql", "postgres")
POSTGRES_EXTRA = "pip install 'tlcli[postgres]'"


def import_optuna():
    """Optuna, quiet; a one-line ConfigError naming the extra when it is not installed."""
    try:  # the optional `sweep` extra
        import optuna
    except ImportError:
        raise ConfigError(
            "tlcli sweep needs Optuna, an optional extra: pip install 'tlcli[sweep]'"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # the heartbeat API tlcli calls is marked experimental; the pin in pyproject.toml is tested
    warnings.filterwarnings(
        "ignore", category=optuna.exceptions.ExperimentalWarning, module=r"tlcli\."
    )
    # study.ask() with a heartbeat: tlcli records the heartbeat itself (study.heartbeat)
    warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used", UserWarning)
    return optuna


def open_storage(storage: str | None, sweep_dir: Path, stale_after: float = 60):
    """An Optuna storage: an RDB URL, a journal file path, or (None) the sweep's own journal.

    An RDB storage records Optuna's heartbeat of running trials, and fails (then re-queues) a
    trial whose heartbeat is older than `stale_after` seconds.
    """
    optuna = import_optuna()
    if storage is None or "://" not in storage:
        path = Path(storage) if storage else sweep_dir / "study.journal"
        path.parent.mkdir(parents=True, exist_ok=True)
        journal = optuna.storages.journal
        return journal.JournalStorage(journal.JournalFileBackend(str(path)))
    url = _with_driver(storage)
    try:
        return _rdb_storage(url, stale_after)
    except ImportError as exc:
        driver = exc.name or "its driver"
        remedy = POSTGRES_EXTRA if url.startswith(POSTGRES_SCHEMES) else f"pip install {driver}"
        raise ConfigError(
            f"storage {storage}: its database driver ({driver}) is not installed: {remedy}"
        ) from None
    except Exception as exc:  # SQLAlchemy raises many kinds; each means "cannot use this URL"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"storage {storage}: cannot open it: {first}") from None


def _rdb_storage(url: str, stale_after: float, attempts: int = 5):
    """Optuna's RDBStorage, which creates its tables in an empty database: processes that
    start at once race to create them, and the losers try again (the tables are there then)."""
    optuna = import_optuna()
    from sqlalchemy.exc import IntegrityError, ProgrammingError  # SQLAlchemy comes with Optuna

    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs={"pool_pre_ping": True},  # a restarted server: reconnect
                    heartbeat_interval=heartbeat_interval(stale_after),
                    grace_period=int(stale_after),
                    heartbeat_stale_trial_callback=requeue_callback(),
                )
        except (IntegrityError, ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 + random.random())


def _with_driver(url: str) -> str:
    """A bare postgresql:// URL names psycopg 3 (the extra's driver) when it is installed.

    >>> _with_driver("postgresql://me@db/tlcli").split("://")[0] in ("postgresql+psycopg",
    ...     "postgresql")
    True
    >>> _with_driver("sqlite:///s.db")
    'sqlite:///s.db'
    """
    scheme, _, rest = url.partition("://")
    if scheme not in POSTGRES_SCHEMES:
        return url
    try:
        import psycopg  # noqa: F401  (the `postgres` extra)
    except ImportError:
        return url  # SQLAlchemy's own default driver, or one line naming the extra
    return f"postgresql+psycopg://{rest}"


def heartbeat_interval(stale_after: float) -> int:
    """Seconds between two heartbeats: six of them fit in `stale_after`."""
    return max(1, int(stale_after // 6))


def requeue_callback():
    """Optuna's callback that re-queues a failed stale trial with its values and user
    attributes (its slot, hence its run folder), at most MAX_ATTEMPTS - 1 times; it keeps the
    numbers of the trials it was called for (in `failed`), to say so."""
    retry = import_optuna().storages.RetryHeartbeatStaleTrialCallback

    class Requeue(retry):
        def __init__(self) -> None:
            super().__init__(max_retry=MAX_ATTEMPTS - 1)
            self.failed: list[int] = []

        def __call__(self, study, trial) -> None:
            self.failed.append(trial.number)
            super().__call__(study, trial)

    return Requeue()


# ------------------------------------------------------------ a database that stops answering


def patient(call: Callable[..., Any], patience: float, *args: Any) -> Any:
    """`call(*args)`, retried while the database does not answer, for up to `patience`
    seconds; then one line (RunError) that says how to go on."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return call(*args)
        except Exception as exc:
            if not is_transient(exc):
                raise
            if time.monotonic() > deadline:
                cause = exc.__cause__ or exc
                first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
                raise RunError(
                    f"the sweep's storage did not answer for {patience:.0f} s ({first}); "
                    "run the same command again when it is back: the trials in flight are "
                    "re-queued"
                ) from None
            time.sleep(1.0)


class PatientTrial:
    """A running trial whose reports wait for the database (see `patient`); the rest is the
    trial's own."""

    def __init__(self, trial, patience: float) -> None:
        self.trial = trial
        self.patience = patience

    def report(self, value: float, step: int) -> None:
        patient(self.trial.report, self.patience, value, step)

    def should_prune(self) -> bool:
        return patient(self.trial.should_prune, self.patience)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.trial, name)


def is_transient(exc: BaseException) -> bool:
    """A database that does not answer (now): SQLAlchemy's connection errors, also as the
    cause of the StorageInternalError Optuna raises for an error during a commit."""
    try:  # SQLAlchemy comes with Optuna
        from sqlalchemy.exc import InterfaceError, OperationalError
    except ImportError:
        return False
    lost = (OperationalError, InterfaceError)
    internal = import_optuna().exceptions.StorageInternalError
    return isinstance(exc, lost) or (isinstance(exc, internal) and isinstance(exc.__cause__, lost))


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
    return [t for t in trials if not is_retry(t) and not t.user_attrs.get("surplus")]


def is_retry(trial) -> bool:
    """A re-queued copy of a trial: by Ctrl-C (retry_of) or a stale heartbeat (Optuna's)."""
    retried = import_optuna().storages.RetryHeartbeatStaleTrialCallback.retried_trial_number
    return "retry_of" in trial.user_attrs or retried(trial) is not None


def slot(trial) -> int:
    """The trial's place in the budget (0, 1, ...), which names its run folder; a re-queued
    copy keeps the place, and the folder, of the trial it retries."""
    return int(trial.user_attrs.get("slot", trial.number))


# ------------------------------------------------------------------ heartbeats, dead trials


@contextlib.contextmanager
def heartbeat(study, trial, storage, interval: float, patience: float = 60) -> Iterator[None]:
    """Record this process on the running trial, and its heartbeat until the block ends:
    Optuna's on an RDB storage, a user attribute elsewhere."""
    optuna = import_optuna()
    patient(_claim, patience, trial)
    if _has_heartbeat(storage):
        study_id = patient(storage.get_study_id_from_name, patience, study.study_name)
        trial_id = patient(
            storage.get_trial_id_from_study_id_trial_number, patience, study_id, trial.number
        )

        def record() -> None:
            storage.record_heartbeat(trial_id)
    else:

        def record() -> None:
            trial.set_user_attr("heartbeat", time.time())

    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                record()
            except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError, ValueError):
                return  # another process decided this trial was dead: nothing left to beat
            except Exception as exc:
                if not is_transient(exc):
                    raise
                # the database is away: beat again when it is back
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name="tlcli-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _claim(trial) -> None:
    trial.set_user_attr("host", HOST)
    trial.set_user_attr("pid", os.getpid())
    trial.set_user_attr("claimed", time.time())  # a re-queued copy carries its last run's


def _has_heartbeat(storage) -> bool:
    rdb = import_optuna().storages.RDBStorage
    return isinstance(storage, rdb) and storage.get_heartbeat_interval() is not None


def reclaim_dead_trials(study, storage, stale_after: float) -> list[int]:
    """Fail the running trials whose process is gone and re-queue them; returns their numbers.

    Two processes may find the same dead trial: the storage lets only one of them fail it, and
    that one re-queues it.
    """
    optuna = import_optuna()
    TrialState = optuna.trial.TrialState
    if _has_heartbeat(storage):
        requeue = storage.get_heartbeat_stale_trial_callback()
        seen = len(requeue.failed)
        optuna.storages.fail_stale_trials(study)  # fails, and re-queues through `requeue`
    else:
        requeue, seen = requeue_callback(), 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _is_dead(trial, stale_after, heartbeat_here=not _has_heartbeat(storage)):
            continue
        try:
            _tell_failed(study, trial.number)
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
            continue  # another process failed it first, and re-queues it
        requeue(study, study.get_trials(deepcopy=False)[trial.number])
    return requeue.failed[seen:]


def _tell_failed(study, number: int) -> None:
    """study.tell(number, state=FAIL); the grid sampler's wish to stop the study when its grid
    is done (it expects study.optimize) is moot: the trial is stored failed all the same."""
    try:
        study.tell(number, state=import_optuna().trial.TrialState.FAIL)
    except RuntimeError as exc:
        if "Study.stop" not in str(exc):
            raise


def _is_dead(trial, stale_after: float, heartbeat_here: bool) -> bool:
    attrs = trial.user_attrs
    started = trial.datetime_start.timestamp() if trial.datetime_start else time.time()
    if float(attrs.get("claimed", 0)) < started - 1:
        attrs = {}  # a re-queued copy not yet claimed: its attributes are its last run's
    if attrs.get("host") == HOST and "pid" in attrs and not _pid_alive(int(attrs["pid"])):
        return True
    if not heartbeat_here:
        return False  # the storage keeps the heartbeat, and fail_stale_trials judges it
    return time.time() - max(float(attrs.get("heartbeat", 0)), started) > stale_after


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
