"""The `tlcli` command line: parse options, load the config, call one function, map errors to
exit codes. Nothing here imports TensorFlow: `tlcli --help`, completion and config errors stay
instant.

    app.py       the Typer app, shared options, error handling (the only place exit codes are set)
    training.py  pretrain, finetune, unfreeze, run, evaluate
    dataset.py   config, preflight
    insight.py   doctor, report
    serving.py   predict, export
    completion.py  shell completion of config files and `--set` keys (Typer does the rest)
    experiments.py  sweep, compare, lr-find

May import: `tlcli.api`, `tlcli.experiments`, `tlcli.insight`, `tlcli.serve`, `tlcli.train`,
`tlcli.data`, `tlcli.runtime`, `tlcli.config`, the root helpers. A command imports what it runs
when it runs, so that `tlcli --help`, completion and config errors load no TensorFlow.
"""

from __future__ import annotations

import gc

import typer

from tlcli import __version__
from tlcli.cli.app import app
from tlcli.runtime.startup import quiet_tensorflow_logs

# Importing a command module registers its commands; `tlcli --help` lists them in this order.
# isort: off
from tlcli.cli import training  # noqa: F401
from tlcli.cli import dataset, insight, serving  # noqa: F401
from tlcli.cli import experiments  # noqa: F401

# isort: on


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tlcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Transfer learning for image classifiers, driven by a YAML config."""
    quiet_tensorflow_logs()  # before any command's code can load TensorFlow


def main() -> None:
    try:
        app()
    finally:
        # Python's last garbage collection walks TensorFlow's whole object graph at exit
        # (~2 s per process, measured by benchmarks/). Nothing tlcli writes depends on it:
        # every file is closed by its own `with` block or Keras callback by now.
        gc.freeze()


__all__ = ["app", "main"]
