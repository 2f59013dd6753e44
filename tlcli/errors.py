"""The error types tlcli raises on purpose, the exit code each maps to, and the ways out.

Raise them where a problem is found, with a message the user can act on; `tlcli.cli` is the
only place that turns them into exit codes. An error may carry remedies: settings of the function
that raised which would get past it. Code below the CLI names them by their Python parameter;
the CLI words them as its flags, so no lower layer knows a command-line option:

>>> error = ConfigError("runs/demo/finetune: finetune finished",
...                     remedies=(Remedy("mode=resume", "skip it"), Remedy("name", "")))
>>> error.exit_code
2
>>> str(error)
"runs/demo/finetune: finetune finished; use mode='resume' to skip it, or another run name"
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Remedy:
    """One way out of an error: a setting of the call that raised, and what it does there.

    `setting` is one of `PYTHON_WORDS`'s keys, or `train:STAGE` (train that stage first).
    """

    setting: str
    purpose: str = ""


# How a Python caller changes each setting; tlcli.cli has the same table in flags.
PYTHON_WORDS = {
    "mode=resume": "mode='resume'",
    "mode=overwrite": "mode='overwrite'",
    "overwrite": "overwrite=True",
    "force": "force=True",
    "output": "output=<another folder>",
    "name": "another run name",
}


def word_remedies(
    remedies: tuple[Remedy, ...], words: Mapping[str, str], train: Callable[[str], str]
) -> str:
    """'; use A to x, B to y, or C', with each setting worded from `words` (or `train`).

    >>> word_remedies((Remedy("train:finetune"),), PYTHON_WORDS, lambda s: f"train {s} first")
    '; train finetune first'
    """
    if not remedies:
        return ""
    trains = [
        train(r.setting.partition(":")[2]) for r in remedies if r.setting.startswith("train:")
    ]
    uses = [
        f"{words[r.setting]} to {r.purpose}" if r.purpose else words[r.setting]
        for r in remedies
        if not r.setting.startswith("train:")
    ]
    parts = list(trains)
    if uses:
        joined = uses[0] if len(uses) == 1 else ", ".join(uses[:-1]) + f", or {uses[-1]}"
        parts.append(f"use {joined}")
    return "; " + "; ".join(parts)


class TlcliError(Exception):
    """Base class: a problem tlcli explains to the user in one line, without a traceback."""

    exit_code = 1

    def __init__(self, message: str, *, remedies: tuple[Remedy, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.remedies = remedies

    def __str__(self) -> str:
        return self.message + word_remedies(
            self.remedies, PYTHON_WORDS, lambda stage: f"call tlcli.train.{stage}(cfg) first"
        )


class ConfigError(TlcliError):
    """The config or the call asks for something that cannot work (exit 2)."""

    exit_code = 2


class DataError(TlcliError):
    """The dataset cannot be used as configured: missing classes, empty folders (exit 2)."""

    exit_code = 2


class RunError(TlcliError):
    """A failure while running: a download that failed, a model that does not load (exit 1)."""

    exit_code = 1
