"""What tlcli prints: stage banners, notices, progress bars and tables, all through one object.

`--quiet` keeps banners, warnings and results and drops progress; progress bars appear only on
a terminal, so CI logs get one line per epoch instead.

>>> console = Console(quiet=True)
>>> console.banner("finetune", "vgg16, 3 classes")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console as RichConsole
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


class Console:
    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        # soft_wrap: long paths stay on one line, whole, for copy-paste and grep
        self.out = RichConsole(highlight=False, soft_wrap=True)
        self.err = RichConsole(stderr=True, highlight=False, soft_wrap=True)
        self._warned: set[str] = set()

    @property
    def keras_verbose(self) -> int:
        """Keras fit/predict verbosity: a progress bar on a terminal, a line per epoch in logs."""
        if self.quiet:
            return 0
        return 1 if self.out.is_terminal else 2

    def banner(self, title: str, details: str = "") -> None:
        self.out.rule(f"[bold]{title}[/bold]", align="left")
        if details:
            self.out.print(details)

    def info(self, message: str) -> None:
        if not self.quiet:
            self.out.print(message)

    def status(self, message: str) -> None:
        """Like `info`, on stderr: for commands whose stdout carries data (CSV, JSON)."""
        if not self.quiet:
            self.err.print(message)

    def result(self, message: str) -> None:
        self.out.print(message)

    def warn(self, message: str) -> None:
        """Print a warning once: stages that reload the same data must not repeat it."""
        if message not in self._warned:
            self._warned.add(message)
            self.err.print(f"[yellow]warning:[/yellow] {message}")

    def error(self, message: str) -> None:
        self.err.print(f"[red]error:[/red] {message}", soft_wrap=True)

    def table(self, title: str, columns: list[str], rows: list[list[str]]) -> None:
        table = Table(title=title, title_justify="left")
        for index, column in enumerate(columns):
            # The first column names the row (a class, a file path): fold it, never cut it.
            if index == 0:
                table.add_column(column, justify="left", overflow="fold")
            else:
                table.add_column(column, justify="right")
        for row in rows:
            table.add_row(*row)
        self.out.print(table)

    @contextlib.contextmanager
    def progress(self) -> Iterator[Callable[[str, int], Callable[[int], None]]]:
        """Yields `start(label, total) -> tick(n)`; draws bars only on a terminal."""
        if self.quiet or not self.out.is_terminal:

            def start_quietly(label: str, total: int) -> Callable[[int], None]:
                return lambda n: None

            yield start_quietly
            return
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.out, transient=True) as bars:

            def start(label: str, total: int) -> Callable[[int], None]:
                task = bars.add_task(label, total=total)
                return lambda n: bars.advance(task, n)

            yield start
