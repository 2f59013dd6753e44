"""What tlcli prints: stage banners, notices, progress bars and tables, all through one object.

`--quiet` keeps banners, warnings and results and drops progress; progress bars appear only on
a terminal, so CI logs get one line per epoch instead. Messages are plain text: a file name with
brackets prints as it is. Only this module knows rich's markup and styles.

>>> import io
>>> printed = io.StringIO()
>>> console = Console(file=printed)
>>> console.warn("2 file(s) skipped [see data_report.json]")
>>> console.table("counts", ["class", "images"], [["disc", "12"], ["ring", "9"]])
>>> print(printed.getvalue(), end="")
warning: 2 file(s) skipped [see data_report.json]
counts
┏━━━━━━━┳━━━━━━━━┓
┃ class ┃ images ┃
┡━━━━━━━╇━━━━━━━━┩
│ disc  │     12 │
│ ring  │      9 │
└───────┴────────┘
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Literal

from rich.console import Console as RichConsole
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

Tone = Literal["plain", "good", "bad"]
TONE_STYLES = {"plain": "", "good": "green", "bad": "yellow"}
UNBOUNDED_WIDTH = 100_000


class Console:
    def __init__(
        self, quiet: bool = False, *, file: IO[str] | None = None, width: int | None = None
    ) -> None:
        """`file` (tests, doctests) takes both streams; `width` fixes the line width."""
        self.quiet = quiet
        # soft_wrap: long paths stay on one line, whole, for copy-paste and grep
        options = {"highlight": False, "soft_wrap": True, "width": width}
        self.out = RichConsole(file=file, **options)
        self.err = RichConsole(file=file, stderr=file is None, **options)
        self._warned: set[str] = set()

    @property
    def keras_verbose(self) -> int:
        """Keras fit/predict verbosity: a progress bar on a terminal, a line per epoch in logs."""
        if self.quiet:
            return 0
        return 1 if self.out.is_terminal else 2

    def banner(self, title: str, details: str = "") -> None:
        self.out.rule(Text(title, style="bold"), align="left")
        if details:
            self.out.print(details, markup=False)

    def info(self, message: str) -> None:
        if not self.quiet:
            self.out.print(message, markup=False)

    def status(self, message: str) -> None:
        """Like `info`, on stderr: for commands whose stdout carries data (CSV, JSON)."""
        if not self.quiet:
            self.err.print(message, markup=False)

    def result(self, message: str, tone: Tone = "plain") -> None:
        self.out.print(Text(message, style=TONE_STYLES[tone]))

    def warn(self, message: str) -> None:
        """Print a warning once: stages that reload the same data must not repeat it."""
        if message not in self._warned:
            self._warned.add(message)
            self.err.print(Text.assemble(("warning:", "yellow"), " ", message))

    def error(self, message: str) -> None:
        self.err.print(Text.assemble(("error:", "red"), " ", message))

    def table(
        self,
        title: str,
        columns: list[str],
        rows: list[list[str]],
        footer: list[list[str]] | None = None,
    ) -> None:
        """A table, with `footer` rows (totals) under a line; a cell that starts with 'error:'
        is shown in the error colour. Too wide for the line, cells wrap: none is cut short."""
        self.out.print(_table(title, columns, rows, footer))

    def fits(self, columns: list[str], rows: list[list[str]]) -> bool:
        """Whether `table` shows these columns and rows on the line with no cell wrapped."""
        unbounded = self.out.options.update(max_width=UNBOUNDED_WIDTH)  # else clamped to the line
        width = self.out.measure(_table("", columns, rows), options=unbounded).maximum
        return width <= self.out.width

    @contextlib.contextmanager
    def progress(self) -> Iterator[Callable[[str, int], Callable[[int], None]]]:
        """Yields `start(label, total) -> tick(n)`; draws bars only on a terminal."""
        if self.quiet or not self.out.is_terminal:

            def start_quietly(label: str, total: int) -> Callable[[int], None]:
                return lambda n: None

            yield start_quietly
            return
        columns = (
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.out, transient=True) as bars:

            def start(label: str, total: int) -> Callable[[int], None]:
                task = bars.add_task(label, total=total)
                return lambda n: bars.advance(task, n)

            yield start


def shown_path(path: Path | str) -> str:
    """A path as a user would type it: relative to the working directory when inside it.

    >>> shown_path(Path.cwd() / "runs" / "quickstart"), shown_path("/elsewhere/runs")
    ('runs/quickstart', '/elsewhere/runs')
    """
    path = Path(path)
    if path.is_absolute():
        try:
            return str(path.relative_to(Path(os.getcwd())))
        except ValueError:
            return str(path)
    return str(path)


def plural(count: int, noun: str) -> str:
    """'1 epoch', '3 epochs'.

    >>> plural(1, "epoch"), plural(0, "image")
    ('1 epoch', '0 images')
    """
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _table(
    title: str, columns: list[str], rows: list[list[str]], footer: list[list[str]] | None = None
) -> Table:
    table = Table(title=Text(title), title_justify="left")
    for index, column in enumerate(columns):
        # The first column names the row (a class, a file path); fold, never cut, any cell.
        table.add_column(Text(column), justify="left" if index == 0 else "right", overflow="fold")
    for index, row in enumerate(rows):
        table.add_row(*(_cell(cell) for cell in row), end_section=index == len(rows) - 1)
    for row in footer or []:
        table.add_row(*(_cell(cell) for cell in row))
    return table


def _cell(text: str) -> Text:
    if text.startswith("error:"):
        return Text.assemble(("error:", "red"), text[len("error:") :])
    return Text(text)
