"""Files written whole or not at all: a kill never leaves a half-written artefact behind.

Every artefact tlcli writes goes to a temporary name beside its target and is renamed into place
once complete (`os.replace` is atomic on POSIX within one file system). Files and folders are
created with the user's usual permissions (mode 0666 or 0777 less the umask), as `open` and
`mkdir` would: a teammate or a serving container can read what the umask lets them read.

The cache's own files (locks, row files) are `tlcli.cache`'s.

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> write_json(folder / "metrics.json", {"accuracy": 0.9})
>>> read_json(folder / "metrics.json")
{'accuracy': 0.9}
>>> sorted(p.name for p in folder.iterdir())  # no temporary file is left
['metrics.json']
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; move it into place only if the block succeeds.

    The temporary name keeps every suffix (`.weights.h5`), because Keras picks the file format
    from it.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    stem, dot, suffix = target.name.partition(".")
    tmp_path = _new_file(target.parent, f".{stem}.tmp", f"{dot}{suffix}")
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _new_file(folder: Path, prefix: str, suffix: str) -> Path:
    """A new empty file under a random name. Not tempfile.mkstemp: its files are mode 0600
    whatever the umask, and the rename would carry that mode to the artefact."""
    while True:
        path = folder / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return path
        except FileExistsError:  # pragma: no cover - 1 in 4 billion
            continue


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a new empty folder beside `target`; it replaces `target` only if the block succeeds.

    A folder cannot be swapped in one step, so an existing `target` (the caller decides whether
    it may be replaced) is first renamed aside and deleted once the new one is in place.

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "export"
    >>> with atomic_dir(target) as tmp:
    ...     _ = (tmp / "labels.txt").write_text("cat\\ndog\\n")
    >>> (target / "labels.txt").read_text().split()
    ['cat', 'dog']
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    # mkdir, unlike tempfile.mkdtemp (mode 0700), gives the folder the user's usual permissions.
    tmp_path = target.parent / f".{target.name}.tmp-{secrets.token_hex(4)}"
    tmp_path.mkdir()
    try:
        yield tmp_path
        old = target.parent / f".{target.name}.old-{secrets.token_hex(4)}"
        if target.exists():
            os.replace(target, old)
        os.replace(tmp_path, target)
        if old.exists():
            shutil.rmtree(old)
    finally:
        if tmp_path.exists():
            shutil.rmtree(tmp_path)


def write_text(target: Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: Path, data: Any) -> None:
    write_text(target, json.dumps(data, indent=2, default=str) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file with a header, as dicts; [] when the file is missing or empty."""
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_csv_rows(target: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Write `rows` under a header of `columns`, atomically."""
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(target, out.getvalue())
