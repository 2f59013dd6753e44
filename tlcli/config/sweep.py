"""The `sweep:` section: what `tlcli sweep` searches, and the check that every swept key can work.

A parameter is a config key (dotted) and the values it may take, written as a list of choices,
a range, or a short form that `--param KEY=SPEC` uses too:

    finetune.optimizer.learning_rate: loguniform(1.0e-4, 1.0e-2)    # float, log scale
    model.head.dropout: uniform(0.0, 0.5)                            # float
    finetune.epochs: int(5, 20, 5)                                   # int, step 5
    model.head.dense: [[], [128], [256]]                             # choices (or choice(...))
    finetune.optimizer.name: {choices: [adam, sgd]}                  # the long forms
    model.head.dropout: {low: 0.0, high: 0.5, log: false}

Before the first trial each key is checked against the schema: an unknown key, a value of the
wrong type for that key, or a bad range is one line naming the key (`check_space`).

>>> parse_spec("loguniform(1e-4, 1e-2)")
{'kind': 'float', 'low': 0.0001, 'high': 0.01, 'log': True}
>>> parse_spec("int(5, 20, 5)"), parse_spec([[], [128]])
({'kind': 'int', 'low': 5, 'high': 20, 'step': 5}, {'kind': 'choice', 'choices': [[], [128]]})
"""

from __future__ import annotations

import copy
import re
import typing
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    Field,
    PositiveInt,
    ValidationError,
    model_serializer,
    model_validator,
)

from tlcli.config.keys import UnknownKey, find_key, set_key
from tlcli.config.messages import at, error_key_and_message

SHORT_FORM = re.compile(r"^\s*(uniform|loguniform|int|logint|choice)\s*\((.*)\)\s*$", re.DOTALL)


def parse_spec(value: Any) -> Any:
    """A parameter's values as a mapping with `kind`: from a list, a short form or a mapping."""
    if isinstance(value, list):
        return {"kind": "choice", "choices": value}
    if isinstance(value, str):
        match = SHORT_FORM.match(value)
        if not match:
            raise ValueError(
                f"'{value}' is not a search space: use uniform(a, b), loguniform(a, b), "
                "int(a, b[, step]), choice(x, y, ...) or a list of choices"
            )
        name, inner = match.groups()
        try:
            args = yaml.safe_load(f"[{inner}]")
        except yaml.YAMLError:
            raise ValueError(f"'{value}': cannot read the values in brackets") from None
        if name == "choice":
            return {"kind": "choice", "choices": args}
        numbers = [_number(arg, value) for arg in args]
        if len(numbers) not in (2, 3) or (len(numbers) == 3 and "int" not in name):
            raise ValueError(f"'{value}': expected {name}(low, high{', step' * ('int' in name)})")
        spec = {"kind": "int" if "int" in name else "float", "low": numbers[0], "high": numbers[1]}
        if name in ("loguniform", "logint"):
            spec["log"] = True
        if len(numbers) == 3:
            spec["step"] = numbers[2]
        return spec
    if isinstance(value, dict) and "kind" not in value:
        if "choices" in value:
            return {"kind": "choice", **value}
        return {"kind": None, **value}  # int or float: decided from the key (check_space)
    return value


def _number(arg: Any, spec: str) -> float | int:
    """YAML reads `1e-4` (no dot) as a string; numbers are what a range needs."""
    if isinstance(arg, bool) or not isinstance(arg, int | float | str):
        raise ValueError(f"'{spec}': {arg!r} is not a number")
    if isinstance(arg, str):
        try:
            return float(arg)
        except ValueError:
            raise ValueError(f"'{spec}': {arg!r} is not a number") from None
    return arg


class ParamSpec(BaseModel):
    """One swept key: choices, or a float or int range (optionally on a log scale, or stepped)."""

    model_config = {"extra": "forbid"}

    kind: Literal["float", "int", "choice"] | None = Field(
        None, description="default: choice with choices, else int when low, high are whole"
    )
    low: float | None = Field(None, description="lowest value of a range")
    high: float | None = Field(None, description="highest value of a range (included)")
    log: bool = Field(False, description="sample the range on a log scale")
    step: float | None = Field(None, gt=0, description="spacing of a range's values")
    choices: list[Any] | None = Field(None, description="the values to choose from")

    @model_validator(mode="before")
    @classmethod
    def _forms(cls, value: Any) -> Any:
        return parse_spec(value)

    @model_validator(mode="after")
    def _complete(self) -> ParamSpec:
        if self.kind == "choice":
            if not self.choices:
                raise ValueError("choices: give at least one value")
            return self
        if self.low is None or self.high is None:
            raise ValueError("give choices, or a range with low and high")
        if not self.low < self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0 (got {self.low:g})")
        if self.log and self.step is not None:
            raise ValueError("a log range cannot have a step")
        return self

    @model_serializer
    def _short_form(self) -> Any:
        """Written back (config.yaml, best.yaml) in the short form it can be read from."""
        if self.kind == "choice":
            return list(self.choices or [])
        cast = int if self.kind == "int" else float
        bounds = [cast(self.low), cast(self.high)]
        if self.kind is None:  # not yet checked against its key: keep the long form
            return {"low": self.low, "high": self.high, "log": self.log, "step": self.step}
        if self.kind == "int":
            name = "logint" if self.log else "int"
            step = [] if self.step in (None, 1) else [int(self.step)]
            return f"{name}({', '.join(map(str, bounds + step))})"
        if self.step is not None:
            return {"kind": "float", "low": bounds[0], "high": bounds[1], "step": self.step}
        return f"{'loguniform' if self.log else 'uniform'}({bounds[0]!r}, {bounds[1]!r})"

    def values_to_check(self) -> list[Any]:
        """The values that show whether the whole space fits its key: each choice, both ends."""
        if self.kind == "choice":
            return list(self.choices or [])
        cast = int if self.kind == "int" else float
        return [cast(self.low), cast(self.high)]


class SweepConfig(BaseModel):
    """A hyper-parameter search over this config (`tlcli sweep`); other commands ignore it."""

    model_config = {"extra": "forbid", "validate_default": True}

    metric: Literal["val_accuracy", "val_loss"] = Field(
        "val_accuracy", description="what a trial scores: the last trained stage's last epoch"
    )
    direction: Literal["auto", "maximize", "minimize"] = Field(
        "auto", description="auto: maximize accuracy, minimize loss"
    )
    trials: PositiveInt = Field(20, description="trials in the study (all processes together)")
    sampler: Literal["tpe", "random", "grid"] = Field(
        "tpe", description="Optuna sampler; grid takes choices and stepped int ranges only"
    )
    pruner: Literal["median", "none"] = Field(
        "median", description="stop trials whose per-epoch metric is below the median so far"
    )
    params: dict[str, ParamSpec] = Field(
        default_factory=dict,
        description="config key -> values: [a, b], uniform(a, b), loguniform(a, b), int(a, b)",
    )
    evaluate: Literal["best", "all"] = Field(
        "best", description="which finished trials are evaluated on evaluate.split"
    )
    stale_after: PositiveInt = Field(
        60, description="seconds without a heartbeat after which a running trial is re-queued"
    )

    @property
    def maximize(self) -> bool:
        if self.direction == "auto":
            return self.metric.endswith("accuracy")
        return self.direction == "maximize"


def check_space(config_class: type[BaseModel], config: dict[str, Any], sweep: SweepConfig) -> None:
    """Each swept key exists, and each end of its range (each choice) is a valid value for it.

    `config` is the config without its sweep section (model_dump); errors are `at(...)` errors
    naming `sweep.params.<key>`, which tlcli.config.messages words as one line.
    """
    if sweep.sampler == "grid" and not sweep.params:
        raise at("sweep.sampler", "grid needs params to enumerate")
    for key, spec in sweep.params.items():
        where = f"sweep.params.{key}"
        try:
            annotation = find_key(config_class, key, hidden=("sweep",)).annotation
        except UnknownKey as exc:
            raise at(where, f"unknown config key{exc.hint}") from None
        if spec.kind is None:
            whole = [spec.low, spec.high, spec.step or 1]
            integral = all(float(v).is_integer() for v in whole)
            spec.kind = "int" if integral and _accepts(annotation, int) else "float"
        if spec.kind == "float" and not _accepts(annotation, float):
            raise at(where, "this key does not take a float range: give int(a, b) or choices")
        if sweep.sampler == "grid" and spec.kind == "float":
            raise at(where, "the grid sampler needs choices or an int range, not a float range")
        for value in spec.values_to_check():
            candidate = copy.deepcopy(config)
            set_key(candidate, key, value, replace=True)
            try:
                config_class.model_validate(candidate)
            except ValidationError as exc:
                inner_key, message = error_key_and_message(exc.errors()[0], config_class)
                about = "" if inner_key == key else f" ({inner_key})"
                raise at(where, f"{value!r} does not work{about}: {message}") from None


def _accepts(annotation: Any, kind: type) -> bool:
    """Whether a type annotation takes values of `kind` (int or float), through unions."""
    if annotation is kind:
        return True
    if kind is float and annotation is int:
        return False
    return any(_accepts(arg, kind) for arg in typing.get_args(annotation))
