"""The error types tlcli raises on purpose, and the exit code each maps to.

Raise them where a problem is found, with a message the user can act on; `cli.py` is the
only place that turns them into exit codes:

>>> ConfigError("configs/x.yaml: finetune.epochs: must be at least 1").exit_code
2
"""

from __future__ import annotations


class TlcliError(Exception):
    """Base class: a problem tlcli explains to the user in one line, without a traceback."""

    exit_code = 1


class ConfigError(TlcliError):
    """The config or the command line asks for something that cannot work (exit 2)."""

    exit_code = 2


class DataError(TlcliError):
    """The dataset cannot be used as configured: missing classes, empty folders (exit 2)."""

    exit_code = 2


class RunError(TlcliError):
    """A failure while running: a download that failed, a model that does not load (exit 1)."""

    exit_code = 1
