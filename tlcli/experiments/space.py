"""The search space of a sweep: what Optuna suggests for a trial, and the config it makes.

The space itself is part of the config (`tlcli.config.sweep`, checked when the config loads);
here each parameter becomes an Optuna suggestion and the trial's values become a config.

>>> from tlcli.config import load_config
>>> cfg = load_config("configs/quickstart.yaml", sweep_params=["model.head.dense=[[], [64]]"])
>>> trial = trial_config(cfg, {"model.head.dense": [64]}, Path("/tmp/s/trials"), "0003")
>>> trial.model.head.dense, trial.name, trial.sweep, trial.cache_dir
([64], '0003', None, PosixPath('/tmp/s/cache'))
>>> grid_space(cfg.sweep)
{'model.head.dense': ['[]', '[64]']}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tlcli.config import Config
from tlcli.config.keys import set_key
from tlcli.config.sweep import ParamSpec, SweepConfig
from tlcli.errors import ConfigError


def suggest(trial, params: dict[str, ParamSpec]) -> dict[str, Any]:
    """The trial's value of each parameter (Optuna's `suggest_*`), as config values."""
    values = {}
    for key, spec in params.items():
        if spec.kind == "choice":
            labels = choice_labels(spec)
            values[key] = _from_label(spec, trial.suggest_categorical(key, labels))
        elif spec.kind == "int":
            values[key] = trial.suggest_int(
                key, int(spec.low), int(spec.high), step=int(spec.step or 1), log=spec.log
            )
        else:
            values[key] = trial.suggest_float(
                key, spec.low, spec.high, step=spec.step, log=spec.log
            )
    return values


def choice_labels(spec: ParamSpec) -> list[Any]:
    """Optuna stores choices that are None, bool, int, float or str; others (a list of layer
    widths) go by their YAML text, which maps back to the value."""
    choices = spec.choices or []
    if all(c is None or isinstance(c, bool | int | float | str) for c in choices):
        return list(choices)
    return [_label(c) for c in choices]


def _label(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _from_label(spec: ParamSpec, label: Any) -> Any:
    for choice in spec.choices or []:
        if choice == label or (
            not isinstance(label, bool | int | float) and _label(choice) == label
        ):
            return choice
    return label


def grid_space(sweep: SweepConfig) -> dict[str, list[Any]]:
    """Every value of each parameter, for the grid sampler (choices and int ranges only)."""
    grid = {}
    for key, spec in sweep.params.items():
        if spec.kind == "choice":
            grid[key] = choice_labels(spec)
        elif spec.kind == "int":
            grid[key] = list(range(int(spec.low), int(spec.high) + 1, int(spec.step or 1)))
        else:  # refused when the config loads; here for callers that build a SweepConfig
            raise ConfigError(f"sweep.params.{key}: the grid sampler needs choices or int ranges")
    return grid


def trial_config(cfg: Config, values: dict[str, Any], trials_dir: Path, name: str) -> Config:
    """The sweep's config with a trial's values: a plain run config (no sweep section) whose
    run folder is trials_dir/name and whose caches are the sweep's, shared by every trial."""
    tree = cfg.model_dump(mode="json", exclude={"sweep"})
    for key, value in values.items():
        set_key(tree, key, value, replace=True)
    tree.update(name=name, output_dir=str(trials_dir))
    if cfg.cache_dir is None:
        tree["cache_dir"] = str(trials_dir.parent / "cache")
    trial = Config.model_validate(tree)
    trial._source = cfg.source
    return trial


def best_config(cfg: Config, values: dict[str, Any]) -> dict[str, Any]:
    """The config to reproduce a trial with `tlcli run`: the sweep's, with the trial's values,
    its own name and the default cache."""
    tree = cfg.model_dump(mode="json", exclude={"sweep"})
    for key, value in values.items():
        set_key(tree, key, value, replace=True)
    tree["name"] = f"{cfg.name}-best"
    tree.pop("cache_dir", None) if cfg.cache_dir is None else None
    Config.model_validate(tree)  # what best.yaml holds must load
    return tree
