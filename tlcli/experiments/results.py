"""What a sweep leaves: results.csv/json, the table, sweep.png and best.yaml.

Every trial of the study is one row (a re-queued trial shows its latest attempt): its number,
state, score, values, time and error; the evaluation of the trials that were evaluated. The
best complete trial is evaluated on `evaluate.split` when its folder is on this machine, and its
complete config is written to best.yaml for `tlcli run`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import yaml

from tlcli.config import Config
from tlcli.console import Console
from tlcli.experiments.names import short_names
from tlcli.experiments.space import best_config, trial_config
from tlcli.experiments.study import import_optuna, slot
from tlcli.files import write_csv_rows, write_json, write_text
from tlcli.rundir import LOG_FILE, METRICS_FILE, TARGET_STAGES, RunDir
from tlcli.train.evaluate import evaluate
from tlcli.train.plots import pyplot, save_figure

SHOWN_ROWS = 10


def write_results(
    cfg: Config, study, folder: Path, console: Console
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Write every result file of the sweep; returns (rows, best row)."""
    best = _best_trial(study)
    if best is not None:
        _evaluate_best(cfg, best)
    rows = trial_rows(cfg, study)
    best_row = next((r for r in rows if best is not None and r["number"] == best.number), None)
    write_json(
        folder / "results.json",
        {
            "metric": cfg.sweep.metric,
            "maximize": cfg.sweep.maximize,
            "best": best_row,
            "trials": rows,
        },
    )
    columns = list(dict.fromkeys(key for row in rows for key in row))
    write_csv_rows(folder / "results.csv", [_flat(r) for r in rows], columns)
    plot_sweep(cfg, study, folder / "sweep.png")
    if best is not None:
        tree = best_config(cfg, best.user_attrs.get("values", {}))
        write_text(folder / "best.yaml", yaml.safe_dump(tree, sort_keys=False))
    _print_table(cfg, rows, best_row, folder, console)
    return rows, best_row


def trial_rows(cfg: Config, study) -> list[dict[str, Any]]:
    latest: dict[int, Any] = {}
    for trial in study.get_trials(deepcopy=False):
        if trial.user_attrs.get("surplus"):
            continue
        if slot(trial) not in latest or trial.number > latest[slot(trial)].number:
            latest[slot(trial)] = trial
    rows = []
    for number, trial in sorted(latest.items()):
        attrs = trial.user_attrs
        row = {
            "trial": number,
            "number": trial.number,
            "state": trial.state.name.lower(),
            cfg.sweep.metric: trial.value if trial.values else _last_reported(trial),
        }
        row.update({key: attrs.get("values", {}).get(key) for key in cfg.sweep.params})
        evaluation = evaluated_metrics(Path(attrs.get("folder", "")))
        row.update(
            {
                "eval_accuracy": evaluation.get("accuracy"),
                "eval_f1_macro": evaluation.get("f1_macro"),
                "seconds": attrs.get("seconds"),
                "error": attrs.get("error"),
                "folder": attrs.get("folder"),
            }
        )
        rows.append(row)
    return rows


def evaluated_metrics(run_folder: Path) -> dict[str, Any]:
    """metrics.json of the run's latest evaluated stage, or {} (not evaluated, not here)."""
    for stage in reversed(TARGET_STAGES):
        metrics = RunDir(run_folder).read_stage_record(stage, METRICS_FILE)
        if metrics is not None:
            return metrics
    return {}


def _last_reported(trial) -> float | None:
    values = trial.intermediate_values
    return values[max(values)] if values else None


def _best_trial(study):
    complete = import_optuna().trial.TrialState.COMPLETE
    if not study.get_trials(deepcopy=False, states=(complete,)):
        return None
    return study.best_trial


def _evaluate_best(cfg: Config, best) -> None:
    """Evaluate the best trial once (its folder must be on this machine)."""
    folder = Path(best.user_attrs.get("folder", ""))
    if not folder.is_dir() or evaluated_metrics(folder):
        return
    trial_cfg = trial_config(cfg, best.user_attrs.get("values", {}), folder.parent, folder.name)
    with (folder / LOG_FILE).open("a") as out:
        evaluate(trial_cfg, None, Console(True, file=out))


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (yaml.safe_dump(v, default_flow_style=True).strip() if isinstance(v, list | dict) else v)
        for k, v in row.items()
    }


def _print_table(cfg, rows, best_row, folder: Path, console: Console) -> None:
    metric = cfg.sweep.metric
    names = short_names(list(cfg.sweep.params))
    scored = [r for r in rows if r[metric] is not None]
    scored.sort(key=lambda r: r[metric], reverse=cfg.sweep.maximize)
    shown = scored[:SHOWN_ROWS]
    columns = ["trial", "state", metric, *names.values(), "eval acc", "s"]
    table = [
        [
            f"{r['trial']:04d}",
            r["state"],
            f"{r[metric]:.4f}",
            *(_cell(r[key]) for key in names),
            "-" if r["eval_accuracy"] is None else f"{r['eval_accuracy']:.3f}",
            "-" if r["seconds"] is None else f"{r['seconds']:.1f}",
        ]
        for r in shown
    ]
    failed = sum(r["state"] == "fail" for r in rows)
    title = f"{cfg.name}: {len(rows)} trials ({failed} failed), by {metric}, best first"
    if len(shown) < len(scored):
        title += f" (the first {len(shown)})"
    console.table(title, columns, table)
    if best_row is not None:
        console.result(
            f"best: trial {best_row['trial']:04d}, {metric} {best_row[metric]:.4f} -> "
            f"{folder / 'best.yaml'} (tlcli run it to train it again)",
            tone="good",
        )
    console.info(f"results: {folder / 'results.csv'}, {folder / 'sweep.png'}")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "-" if value is None else str(value)


def plot_sweep(cfg: Config, study, target: Path) -> None:
    """Left: each trial's score and the best so far; right: parameter importance (Optuna's)."""
    TrialState = import_optuna().trial.TrialState
    plt = pyplot()
    figure, (history, importance) = plt.subplots(1, 2, figsize=(11, 4))
    best_so_far, best = [], None
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    for trial in sorted(complete, key=lambda t: t.number):
        better = best is None or (trial.value > best if cfg.sweep.maximize else trial.value < best)
        best = trial.value if better else best
        best_so_far.append((trial.number, best))
    history.plot([t.number for t in complete], [t.value for t in complete], "o", label="complete")
    pruned = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
        if t.intermediate_values
    ]
    history.plot(
        [t.number for t in pruned], [_last_reported(t) for t in pruned], "x", label="pruned"
    )
    if best_so_far:
        history.step(*zip(*best_so_far, strict=True), where="post", label="best so far")
    history.set_xlabel("trial")
    history.set_ylabel(cfg.sweep.metric)
    history.set_title("optimisation history")
    history.grid(alpha=0.3)
    history.legend()
    scores = _importances(study)
    importance.barh(list(scores)[::-1], list(scores.values())[::-1])
    importance.set_title(
        "parameter importance" if scores else "parameter importance (too few trials)"
    )
    figure.suptitle(f"{cfg.name}: sweep of {len(study.trials)} trials")
    figure.tight_layout()
    save_figure(figure, target)


def _importances(study) -> dict[str, float]:
    """Optuna's parameter importances; {} while there are too few complete trials."""
    optuna = import_optuna()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "importances will be equal" on small studies
        try:
            return dict(optuna.importance.get_param_importances(study))
        except (RuntimeError, ValueError, ZeroDivisionError):
            return {}
