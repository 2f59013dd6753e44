"""The Typer app, the options commands share, and the one place errors become exit codes.

Exit codes: 0 success; 2 a usage, config or dataset error (one line, no traceback); 1 a failure
while running; 130 interrupted. Nothing here imports TensorFlow.

>>> from tlcli.errors import ConfigError, Remedy
>>> cli_message(ConfigError("runs/demo/finetune: finetune finished",
...                         remedies=(Remedy("mode=resume", "skip it"), Remedy("name"))))
'runs/demo/finetune: finetune finished; use --resume to skip it, or another run name'
"""

from __future__ import annotations

import functools
import inspect
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup
from typer.models import ArgumentInfo

from tlcli.cli.completion import complete_config_file, complete_set_key
from tlcli.console import Console
from tlcli.errors import ConfigError, TlcliError, word_remedies


def plain_help(command: Any, ctx: typer.Context) -> None:
    """Typer 0.29 shows a type beside every parameter in --help: `<bool>` beside flags, which
    take no value, and `<path>` or `<list[str]>` beside arguments, whose names (CONFIG, IMAGES)
    say more. Flags and arguments show their name alone; options keep their metavar."""
    for param in [*command.params, command.get_help_option(ctx)]:
        if getattr(param, "is_flag", False):
            param.metavar = ""
        elif getattr(param, "param_type_name", "") == "argument":
            param.display_type_rich = lambda ctx: None  # read by Typer's help panel only


class Group(TyperGroup):
    """The `tlcli` group: its commands' help goes through `plain_help`."""

    def get_command(self, ctx: typer.Context, name: str) -> Any:
        command = super().get_command(ctx, name)
        if command is not None:
            plain_help(command, ctx)
        return command

    def format_help(self, ctx: typer.Context, formatter: Any) -> None:
        plain_help(self, ctx)
        super().format_help(ctx, formatter)


app = typer.Typer(
    cls=Group,
    help="Transfer learning for image classifiers, driven by a YAML config.\n\n"
    "Example: tlcli run configs/quickstart.yaml",
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

CONFIG = typer.Argument(
    ...,
    metavar="CONFIG",
    help="YAML config file.",
    show_default=False,
    autocompletion=complete_config_file,
)
SET = typer.Option(
    [],
    "--set",
    "-s",
    metavar="KEY=VALUE",
    help="Override a config key, e.g. finetune.epochs=3.",
    autocompletion=complete_set_key,
)
RESUME = typer.Option(False, "--resume", help="Continue an interrupted stage; skip finished ones.")
OVERWRITE = typer.Option(
    False,
    "--overwrite",
    help="Delete the stage, the stages built on it and their exports; train again.",
)
QUIET = typer.Option(False, "--quiet", "-q", help="No progress output: banners and results only.")

# How the CLI words each remedy a lower layer offers (tlcli.errors.PYTHON_WORDS for Python).
CLI_WORDS = {
    "mode=resume": "--resume",
    "mode=overwrite": "--overwrite",
    "overwrite": "--overwrite",
    "force": "--force",
    "output": "--output",
    "name": "another run name",
}


def cli_message(error: TlcliError) -> str:
    """The error's message with its remedies worded as this CLI's flags."""
    return error.message + word_remedies(
        error.remedies, CLI_WORDS, lambda stage: f"run `tlcli {stage}` (or `tlcli run`) first"
    )


def handle_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn tlcli's own errors into one line on stderr and their exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except TlcliError as exc:
            Console().error(cli_message(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            if sys.stdout.isatty():  # end the line a progress bar may have left open
                print(file=sys.stdout, flush=True)
            print(interrupted(command, kwargs), file=sys.stderr)
            raise typer.Exit(130) from None

    return wrapper


def interrupted(command: Callable[..., Any], arguments: dict[str, Any]) -> str:
    """What to say on Ctrl-C; for a command that resumes (it has --resume), the command that
    continues it: its arguments and every option given, as given, with --resume (and without
    --overwrite or hidden options).

    >>> def sweep(config: Path = CONFIG, params: list[str] = typer.Option([], "--param"),
    ...           trials: int | None = typer.Option(None, "--trials"), overrides=SET,
    ...           resume: bool = RESUME, overwrite: bool = OVERWRITE, quiet: bool = QUIET): ...
    >>> print(interrupted(sweep, {"config": Path("my.yaml"), "params": ["seed=[1, 2]"],
    ...     "trials": 2, "overrides": ["name=a b"], "resume": False, "overwrite": True,
    ...     "quiet": False}))
    interrupted; to continue where it stopped:
      tlcli sweep my.yaml --param 'seed=[1, 2]' --trials 2 --set 'name=a b' --resume
    """
    if "resume" not in arguments:
        return "interrupted"
    words = ["tlcli", command.__name__]
    for name, parameter in inspect.signature(command).parameters.items():
        words += _given(parameter.default, arguments.get(name))
    words.append("--resume")
    return f"interrupted; to continue where it stopped:\n  {shlex.join(words)}"


def _given(info: Any, value: Any) -> list[str]:
    """The words that give an argument or option its `value` on the command line again."""
    if isinstance(info, ArgumentInfo):
        return [str(value)]
    flag = next((d for d in getattr(info, "param_decls", ()) if d.startswith("--")), None)
    if flag in (None, "--resume", "--overwrite") or info.hidden or value == info.default:
        return []
    if value is True:
        return [flag]
    values = value if isinstance(value, list | tuple) else [value]
    return [word for one in values for word in (flag, str(one))]


def at_least_one(value: int) -> int:
    """Typer callback for a count option (--top-k, --batch-size)."""
    if value < 1:
        raise typer.BadParameter(f"expected 1 or more, got {value}")
    return value


def training_mode(resume: bool, overwrite: bool) -> str:
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other")
    return "resume" if resume else "overwrite" if overwrite else "new"


def load(config: Path, overrides: list[str]):
    # imported when a command runs: pydantic stays off --help and completion
    from tlcli.config import load_config

    return load_config(config, overrides)


def make_console(quiet: bool) -> Console:
    return Console(quiet=quiet)
