"""The store: cache entries named by their content, built once across processes, kept while in
use.

Runs and processes may share a cache folder. One process builds an entry while the others wait
on its lock (`filelock`, on every platform), readers mark what they use (`mark_used`), and only
entries nobody used for a while are deleted when another entry of the same family replaces
them (`remove_stale`).

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> def build():
...     (folder / "squares-ab12.txt").write_text("0 1 4 9")
...     return "built"
>>> load = lambda: "found" if (folder / "squares-ab12.txt").is_file() else None
>>> cached_entry(folder / "squares-ab12.txt", load, build, "squares-")
('built', False)
>>> cached_entry(folder / "squares-ab12.txt", load, build, "squares-")
('found', True)
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from filelock import FileLock

T = TypeVar("T")

# An entry of a shared cache that nobody used for this long may be deleted when another entry of
# the same kind replaces it. Readers of an entry map it into memory, and on POSIX a mapped file
# stays readable after it is unlinked; the wait protects a reader between its check and its open.
STALE_SECONDS = 600


def cached_entry(
    path: Path, load: Callable[[], T | None], build: Callable[[], T], family: str
) -> tuple[T, bool]:
    """A shared cache entry at `path`: `load()` it, or `build()` it once across processes;
    (entry, whether it was found). Before building, entries of the same `family` (file name
    prefix) that nobody used for a while are removed."""
    found = load()
    if found is not None:
        return found, True
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path.with_suffix(".lock")):
        found = load()  # another process may have built it while this one waited
        if found is not None:
            return found, True
        remove_stale(path.parent, family, keep=path.stem)
        return build(), False


def mark_used(path: Path) -> None:
    """Record that a cache entry was just used (its mtime), so `remove_stale` keeps it."""
    with contextlib.suppress(OSError):  # a read-only cache is still a cache
        os.utime(path)


def remove_stale(folder: Path, prefix: str, keep: str, older_than: float | None = None) -> None:
    """Delete the files of `folder` named `prefix*` (and their temporary files) except those
    named `keep*`, when unused for `older_than` seconds (default STALE_SECONDS): entries another
    run or process may be using stay."""
    older_than = STALE_SECONDS if older_than is None else older_than
    now = time.time()
    for path in [*folder.glob(f"{prefix}*"), *folder.glob(f".{prefix}*.tmp*")]:
        if path.name.startswith((keep, f".{keep}")):
            continue
        with contextlib.suppress(OSError):  # gone already, or not ours to delete
            if now - path.stat().st_mtime > older_than:
                path.unlink()
