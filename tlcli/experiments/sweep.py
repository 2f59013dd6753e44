"""`tlcli sweep`: run trials of a config's search space until the study has its budget.

    <output_dir>/<name>-sweep/      the sweep folder (beside the run folder of the same config)
        sweep.json                  what was swept, and where the study is stored
        study.journal               the Optuna study (unless `storage` names another)
        cache/                      decoded images and cached features, shared by every trial
        trials/0000/ ...            one normal run folder per trial (+ trial.json, log.txt)
        results.csv, results.json   every trial: values, state, score, time, error
        sweep.png                   optimisation history and parameter importance
        best.yaml                   the best trial's complete config, for `tlcli run`

Trials run in this process one after another, sharing TensorFlow, the decoded images, the
cached features and the frozen base. Several processes may work on one study (same storage,
mode resume): each takes the next trial until the budget is reached, then waits for the trials
still running elsewhere, and writes the results.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tlcli.config import Config
from tlcli.console import Console
from tlcli.errors import ConfigError
from tlcli.experiments import study as studies
from tlcli.experiments.names import short_names
from tlcli.experiments.results import write_results
from tlcli.experiments.space import grid_space, suggest, trial_config
from tlcli.files import write_json, write_text
from tlcli.rundir import LOG_FILE, SWEEP_RECORD, Mode, RunDir
from tlcli.runtime.startup import import_tensorflow
from tlcli.train.evaluate import evaluate
from tlcli.train.head_search import BASELINE_KEYS, search_blocker

# What the finetune head search (finetune.search: auto) decides itself: sweeping these moves
# only the head as configured, which the search keeps only when no candidate beats it.
SEARCH_DECIDES = ("model.head.dropout", *(f"finetune.{key}" for key in BASELINE_KEYS))
# Keys whose *values* can switch the search off in a trial (head_search.search_blocker).
SEARCH_SWITCHES = (
    "finetune.search", "model.head.dense", "data.augment", "finetune.cache",
    "finetune.cache_views",
)  # fmt: skip


def keys_the_search_decides(cfg: Config) -> list[str]:
    """The swept keys whose values the finetune head search would mostly not use."""
    swept = list(cfg.sweep.params) if cfg.sweep else []
    if cfg.finetune is None or search_blocker(
        cfg.finetune, cfg.model.head, cfg.data.augment.enabled, cached=True
    ):
        return []
    if any(key.startswith(switch) for key in swept for switch in SEARCH_SWITCHES):
        return []
    return [key for key in swept if key.startswith(SEARCH_DECIDES)]


@dataclass
class SweepResult:
    folder: Path
    trials_run: int  # by this process
    rows: list[dict[str, Any]]  # every trial of the study, as in results.json
    best: dict[str, Any] | None  # the best complete trial's row


def sweep(
    cfg: Config,
    mode: Mode = "new",
    console: Console | None = None,
    storage: str | None = None,
    *,
    workers: int = 1,
    write_summary: bool = True,
) -> SweepResult:
    """Run the trials of `cfg.sweep` (this process's share of them), then write the results.

    `workers` > 1 starts that many processes in all on this machine, the others as helpers on
    the same study (a trial's Keras overhead is mostly one core's work). A helper
    (`write_summary=False`) runs trials and leaves the results to the process that started it.
    """
    console = console or Console()
    if cfg.sweep is None or not cfg.sweep.params:
        raise ConfigError(f"{cfg.source}: sweep: give the keys to search in sweep.params")
    studies.import_optuna()
    folder = sweep_folder(cfg)
    RunDir(folder).check_not_a_run()
    if mode == "overwrite":
        _clear_sweep_folder(folder, keep_study=storage is not None)
    store = studies.open_storage(storage, folder)
    study = studies.open_study(cfg, store, mode)
    import_tensorflow()  # quietly, before anything below imports Keras
    budget = _budget(cfg)
    write_json(
        folder / SWEEP_RECORD,
        {"name": cfg.name, "metric": cfg.sweep.metric, "trials": budget, "storage": storage or
         str(folder / "study.journal"), "params": list(cfg.sweep.params)},
    )  # fmt: skip
    console.banner(
        "sweep",
        f"{cfg.name}: {budget} trials over {', '.join(cfg.sweep.params)}; "
        f"{cfg.sweep.metric} ({'max' if cfg.sweep.maximize else 'min'}), {cfg.sweep.sampler}",
    )
    decided = keys_the_search_decides(cfg)
    if decided:
        console.warn(
            f"finetune.search is auto: the head search fits the finetune head itself, and "
            f"{', '.join(decided)} only shape{'s' if len(decided) == 1 else ''} the head as "
            "configured it must beat; set finetune.search: off to sweep "
            f"{'it' if len(decided) == 1 else 'them'}"
        )
    helpers = _start_helpers(cfg, folder, storage, workers - 1)
    try:
        trials_run = _run_trials(cfg, study, budget, folder, console)
    finally:
        for helper in helpers:
            helper.wait()
    if not write_summary:
        return SweepResult(folder, trials_run, [], None)
    rows, best = write_results(cfg, study, folder, console)
    return SweepResult(folder, trials_run, rows, best)


def sweep_folder(cfg: Config) -> Path:
    """Where the sweep of `cfg` goes: beside the run folder of the same config, never in it.

    >>> from tlcli.config import load_config
    >>> cfg = load_config("configs/quickstart.yaml")
    >>> sweep_folder(cfg) == cfg.run_dir.parent / "quickstart-sweep"
    True
    """
    return cfg.output_dir / f"{cfg.name}-sweep"


def _start_helpers(cfg: Config, folder: Path, storage: str | None, count: int) -> list:
    """`count` more processes on this study: `tlcli sweep <sweep>/sweep.yaml --resume`."""
    if count < 1:
        return []
    config = folder / "sweep.yaml"
    write_text(config, cfg.to_yaml())
    command = [sys.executable, "-m", "tlcli", "sweep", str(config), "--resume", "--quiet"]
    command += ["--helper", *(["--storage", storage] if storage else [])]
    helpers = []
    for index in range(1, count + 1):
        with (folder / f"worker-{index}.log").open("w") as log:
            helpers.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
    return helpers


def _budget(cfg: Config) -> int:
    if cfg.sweep.sampler != "grid":
        return cfg.sweep.trials
    points = 1
    for values in grid_space(cfg.sweep).values():
        points *= len(values)
    return min(cfg.sweep.trials, points)


def _run_trials(cfg: Config, study, budget: int, folder: Path, console: Console) -> int:
    # Keras after import_tensorflow(): sweep's config errors load no TensorFlow
    from tlcli.model.weights import shared_frozen_bases

    TrialState = studies.import_optuna().trial.TrialState

    ran, waited = 0, False
    poll = max(1.0, min(5.0, cfg.sweep.stale_after / 4))
    with shared_frozen_bases():
        while True:
            for number in studies.reclaim_dead_trials(study, cfg.sweep.stale_after):
                console.warn(f"trial {number}: its process stopped; re-queued with its values")
            trials = study.get_trials(deepcopy=False)
            waiting = any(t.state == TrialState.WAITING for t in trials)
            if not waiting and len(studies.counted(trials)) >= budget:
                if not any(t.state == TrialState.RUNNING for t in trials):
                    return ran
                if not waited:
                    console.info("waiting for the trials still running in other processes")
                    waited = True
                time.sleep(poll)
                continue
            study.sampler = studies.make_sampler(cfg.sweep, cfg.seed, len(trials))
            trial = study.ask()
            if not _claim_slot(study, trial, budget):
                continue
            study.sampler = studies.make_sampler(cfg.sweep, cfg.seed, trial.number)
            _one_trial(cfg, study, trial, budget, folder, console)
            ran += 1


def _claim_slot(study, trial, budget: int) -> bool:
    """Give a new trial its place in the budget; a trial asked for after another process took
    the last place is surplus: told failed, and not counted."""
    TrialState = studies.import_optuna().trial.TrialState
    if "slot" in trial.user_attrs:  # a re-queued trial keeps its place
        return True
    trials = studies.counted(study.get_trials(deepcopy=False))
    before = [t for t in trials if t.number < trial.number]
    if len(before) < budget:
        trial.set_user_attr("slot", len(before))
        return True
    trial.set_user_attr("surplus", True)
    _tell(study, trial, None, TrialState.FAIL)
    return False


def _tell(study, trial, value: float | None, state) -> None:
    """study.tell; the grid sampler's wish to stop the study when its grid is done is moot
    here (it expects study.optimize): the budget loop ends the sweep, and the trial is stored."""
    try:
        study.tell(trial, value, state=state)
    except RuntimeError as exc:
        if "Study.stop" not in str(exc):
            raise


def _one_trial(cfg: Config, study, trial, budget: int, folder: Path, console: Console) -> None:
    # Keras after import_tensorflow(): sweep's config errors load no TensorFlow
    from tlcli.experiments.trial import run_trial

    TrialState = studies.import_optuna().trial.TrialState

    number = studies.slot(trial)
    values = suggest(trial, cfg.sweep.params)
    trial_cfg = trial_config(cfg, values, folder / "trials", f"{number:04d}")
    trial.set_user_attr("folder", str(trial_cfg.run_dir))
    trial.set_user_attr("values", values)
    log = trial_cfg.run_dir / LOG_FILE
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        with studies.heartbeat(trial, max(1.0, cfg.sweep.stale_after / 6)), log.open("a") as out:
            outcome = run_trial(trial_cfg, trial, values, cfg.sweep.metric, Console(True, file=out))
    except KeyboardInterrupt:
        # Interrupted work resumes: the trial goes back in the queue with its values.
        _tell(study, trial, None, TrialState.FAIL)
        retry = {"retry_of": trial.number, "slot": number}
        study.enqueue_trial(values_of(trial), user_attrs=retry, skip_if_exists=False)
        raise
    trial.set_user_attr("seconds", outcome.seconds)
    if outcome.error:
        trial.set_user_attr("error", outcome.error)
    if outcome.state == "complete" and cfg.sweep.evaluate == "all":
        _evaluate(trial_cfg)
    state = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED}.get(
        outcome.state, TrialState.FAIL
    )
    _tell(study, trial, outcome.value if state == TrialState.COMPLETE else None, state)
    shown = "failed: " + outcome.error if outcome.error else _score(cfg, outcome)
    console.result(
        f"trial {number:04d} ({len(studies.counted(study.get_trials(deepcopy=False)))}/{budget}) "
        f"{_values_text(values)} -> {shown} ({outcome.seconds:.1f}s)",
        tone="bad" if outcome.error else "plain",
    )


def values_of(trial) -> dict[str, Any]:
    return dict(trial.params)


def _evaluate(trial_cfg: Config) -> None:
    """Score the trial's last stage on evaluate.split (its metrics.json feeds the results)."""
    with (trial_cfg.run_dir / LOG_FILE).open("a") as out:
        evaluate(trial_cfg, None, Console(True, file=out))


def _score(cfg: Config, outcome) -> str:
    text = f"{cfg.sweep.metric} {outcome.value:.4f}" if outcome.value is not None else "-"
    return text + (
        f", pruned after epoch {outcome.pruned_at + 1}" if outcome.pruned_at is not None else ""
    )


def _values_text(values: dict[str, Any]) -> str:
    names = short_names(list(values))
    return ", ".join(f"{names[k]}={_short(v)}" for k, v in values.items())


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _clear_sweep_folder(folder: Path, keep_study: bool) -> None:
    """Everything of a previous sweep but the cache (keyed by content, still valid)."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path.name == "cache" or (keep_study and path.name == "study.journal"):
            continue
        shutil.rmtree(path) if path.is_dir() else path.unlink()
