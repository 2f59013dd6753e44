"""`tlcli compare`: runs (and sweeps' trials) side by side, in one table.

Columns: the run, the config keys whose values differ between the runs, then for each trained
stage its validation accuracy, its evaluation (accuracy and macro F1, per class on request) and
its time. A sweep folder stands for its trials; a folder that is neither is reported and
skipped. The printed table has a row per run when that fits the line, else a row per column
with the runs side by side (as many per table as fit): no number is ever cut short.

>>> differing([{"a": 1, "b": 2}, {"a": 1, "b": 3}, {"a": 1}])
['b']
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tlcli.config import flatten
from tlcli.console import Console
from tlcli.errors import ConfigError
from tlcli.experiments.names import short_names
from tlcli.rundir import CONFIG_FILE, METRICS_FILE, SWEEP_RECORD, TARGET_STAGES, RunDir
from tlcli.train.plots import pyplot, save_figure

# Keys that differ between any two runs without saying anything about them.
NOT_COMPARED = ("name", "output_dir", "cache_dir", "sweep")
FORMATS = ("table", "csv", "json", "markdown")


@dataclass
class Comparison:
    columns: list[str]  # "run", then `keys`, then each stage's results ("finetune.accuracy")
    keys: list[str]  # the config keys that differ between the runs
    rows: list[dict[str, Any]]
    skipped: list[str]  # folders that are not runs, with why


def compare(
    paths: list[str | Path],
    *,
    sort: str | None = None,
    descending: bool = False,
    per_class: bool = False,
) -> Comparison:
    """Collect the runs under `paths` (folders or glob patterns) into one table."""
    runs, skipped = find_runs(paths)
    configs = [_config_of(run) for run in runs]
    keys = differing(configs)
    rows = []
    labels = _labels(runs)
    for run, config, label in zip(runs, configs, labels, strict=True):
        row: dict[str, Any] = {"run": label}
        row.update({key: config.get(key) for key in keys})
        row.update(_stage_columns(RunDir(run), per_class))
        rows.append(row)
    columns = list(dict.fromkeys(column for row in rows for column in row))
    if sort is not None:
        if sort not in columns:
            raise ConfigError(f"cannot sort by '{sort}': the columns are {', '.join(columns)}")
        present = [r for r in rows if r.get(sort) is not None]
        present.sort(key=lambda r: _sort_key(r[sort]), reverse=descending)
        rows = present + [r for r in rows if r.get(sort) is None]
    return Comparison(columns, keys, rows, skipped)


def find_runs(paths: list[str | Path]) -> tuple[list[Path], list[str]]:
    """Run folders under `paths`: each run, each trial of a sweep; and what was skipped."""
    runs: list[Path] = []
    skipped: list[str] = []
    for given in paths:
        matches = sorted(glob.glob(str(given))) if glob.has_magic(str(given)) else [str(given)]
        if not matches:
            skipped.append(f"{given}: nothing matches")
        for match in map(Path, matches):
            if is_run(match):
                runs.append(match)
            elif (match / SWEEP_RECORD).is_file():
                trials = sorted(p for p in (match / "trials").glob("*") if is_run(p))
                runs += trials
                if not trials:
                    skipped.append(f"{match}: a sweep without finished trials")
            else:
                skipped.append(f"{match}: not a run or sweep folder (no config.yaml and stages)")
    return list(dict.fromkeys(runs)), skipped


def is_run(folder: Path) -> bool:
    run = RunDir(folder)
    return run.file(CONFIG_FILE).is_file() and any(run.stage_state(s) for s in TARGET_STAGES)


def differing(configs: list[dict[str, Any]]) -> list[str]:
    """The flattened keys whose values are not the same in every config."""
    keys = list(dict.fromkeys(key for config in configs for key in config))
    return [
        key
        for key in keys
        if not key.startswith(NOT_COMPARED)
        and len({json.dumps(c.get(key), sort_keys=True, default=str) for c in configs}) > 1
    ]


def _config_of(run: Path) -> dict[str, Any]:
    return flatten(yaml.safe_load((run / CONFIG_FILE).read_text(encoding="utf-8")) or {})


def _stage_columns(run: RunDir, per_class: bool) -> dict[str, Any]:
    columns: dict[str, Any] = {}
    for stage in TARGET_STAGES:
        state = run.stage_state(stage)
        if state is None:
            continue
        timings = state.get("timings", {})
        seconds = None
        if "stage_finished_at" in timings and "stage_started_at" in timings:
            seconds = round(timings["stage_finished_at"] - timings["stage_started_at"], 1)
        columns[f"{stage}.val_accuracy"] = _round(state.get("final", {}).get("val_accuracy"))
        metrics = run.read_stage_record(stage, METRICS_FILE) or {}
        columns[f"{stage}.accuracy"] = metrics.get("accuracy")
        columns[f"{stage}.f1_macro"] = metrics.get("f1_macro")
        if per_class:
            for label, scores in metrics.get("per_class", {}).items():
                columns[f"{stage}.f1.{label}"] = scores["f1"]
        columns[f"{stage}.seconds"] = seconds
    return columns


def render(comparison: Comparison, output_format: str, console: Console) -> str | None:
    """The comparison as text (csv, json, markdown), or printed as a table (returns None)."""
    columns, rows = comparison.columns, comparison.rows
    if output_format == "table":
        print_table(comparison, console)
        return None
    if output_format == "json":
        return json.dumps({"columns": columns, "runs": rows}, indent=2, default=str) + "\n"
    if output_format == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows({c: _cell(r.get(c), "") for c in columns} for r in rows)
        return out.getvalue()
    if output_format == "markdown":
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]
        return "\n".join(lines) + "\n"
    raise ConfigError(f"format '{output_format}': expected {', '.join(FORMATS)}")


def print_table(comparison: Comparison, console: Console) -> None:
    """A row per run with short headers when it fits the console's line; else a row per column
    (full names, as --sort takes them), a table for each group of runs that fits."""
    columns, rows = comparison.columns, comparison.rows
    names = {**{c: c for c in columns}, **short_names(comparison.keys)}
    headers = [names[c] for c in columns]
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    if console.fits(headers, cells):
        console.table(f"{len(rows)} runs", headers, cells)
        return
    start = 0
    while start < len(rows):
        stop = start + 1
        while stop < len(rows) and console.fits(*_transposed(columns, rows[start : stop + 1])):
            stop += 1
        title = f"{len(rows)} runs" if stop - start == len(rows) else (
            f"runs {start + 1}-{stop} of {len(rows)}" if stop - start > 1
            else f"run {start + 1} of {len(rows)}"
        )  # fmt: skip
        console.table(title, *_transposed(columns, rows[start:stop]))
        start = stop


def _transposed(columns: list[str], rows: list[dict[str, Any]]) -> tuple[list, list]:
    """(headers, cells) of the table with a row per column and a column per run."""
    headers = ["", *(_cell(r.get("run")) for r in rows)]
    return headers, [[c, *(_cell(r.get(c)) for r in rows)] for c in columns if c != "run"]


def plot_metric(comparison: Comparison, metric: str, target: Path) -> None:
    """A horizontal bar per run of one column (e.g. finetune.accuracy)."""
    if metric not in comparison.columns:
        raise ConfigError(
            f"cannot chart '{metric}': the columns are {', '.join(comparison.columns)}"
        )
    shown = [r for r in comparison.rows if isinstance(r.get(metric), int | float)]
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(8, max(2.5, 0.4 * len(shown) + 1)))
    axis.barh([r["run"] for r in shown][::-1], [r[metric] for r in shown][::-1])
    for index, row in enumerate(shown[::-1]):
        axis.text(row[metric], index, f" {row[metric]:.3f}", va="center")
    axis.set_xlabel(metric)
    axis.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    save_figure(figure, target)


def _labels(runs: list[Path]) -> list[str]:
    """Each run's path without the folders all of them share (the whole path for one run)."""
    paths = [run.resolve() for run in runs]
    if len(paths) < 2:
        return [str(p) for p in paths]
    common = Path(os.path.commonpath(paths))
    return [str(p.relative_to(common)) or p.name for p in paths]


def _round(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


def _sort_key(value: Any) -> tuple:
    return (0, value) if isinstance(value, int | float) else (1, str(value))


def _cell(value: Any, missing: str = "-") -> str:
    if value is None:
        return missing
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)
