"""Files written whole or not at all: a kill never leaves a half-written artefact behind.

Every artefact tlcli writes goes to a temporary name beside its target and is renamed into place
once complete (`os.replace` is atomic on POSIX within one file system). Files and folders are
created with the user's usual permissions (mode 0666 or 0777 less the umask), as `open` and
`mkdir` would: a teammate or a serving container can read what the umask lets them read.

Cache entries (decoded images, cached features) may be shared by several runs and processes:
one process builds an entry while the others wait for it (`exclusive_lock`), readers mark what
they use (`mark_used`), and only entries nobody used for a while are deleted (`remove_stale`).
A process maps each entry once (`open_array`), however many stages, trials or evaluations read it,
and passes over an entry read its rows from the file (`read_rows`), so the pages they read stay
in the kernel's page cache and out of the process's RSS (`RowWriter` writes entries the same way).

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
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


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


# An entry of a shared cache that nobody used for this long may be deleted when another entry of
# the same kind replaces it. Readers of an entry map it into memory, and on POSIX a mapped file
# stays readable after it is unlinked; the wait protects a reader between its check and its open.
STALE_SECONDS = 600


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an advisory lock on `path` (created if needed): one process builds a cache entry,
    the others wait, then find it built. A no-op where fcntl does not exist (Windows)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_entry(
    path: Path, load: Callable[[], T | None], build: Callable[[], T], family: str
) -> tuple[T, bool]:
    """A shared cache entry at `path`: `load()` it, or `build()` it once across processes;
    (entry, whether it was found). Before building, entries of the same `family` (file name
    prefix) that nobody used for a while are removed."""
    found = load()
    if found is not None:
        return found, True
    with exclusive_lock(path.with_suffix(".lock")):
        found = load()  # another process may have built it while this one waited
        if found is not None:
            return found, True
        remove_stale(path.parent, family, keep=path.stem)
        return build(), False


# Every map of a file counts the pages it touched in the process's RSS again: two stages each
# mapping a 2.7 GB decoded-image cache showed 5.4 GB. Shared while any reader holds it.
_OPEN_ARRAYS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
# A descriptor per open map, for `read_rows`; closed when its map is collected.
_DESCRIPTORS: dict[int, int] = {}


def open_array(path: Path):
    """The .npy file at `path` as a read-only memory map, one map per file per process.

    >>> import numpy as np, tempfile
    >>> path = Path(tempfile.mkdtemp()) / "a.npy"
    >>> np.save(path, np.arange(3))
    >>> open_array(path) is open_array(path), open_array(path).tolist()
    (True, [0, 1, 2])
    """
    import numpy as np

    stat = path.stat()
    key = (str(path.resolve()), stat.st_ino, stat.st_mtime_ns, stat.st_size)
    array = _OPEN_ARRAYS.get(key)
    if array is None:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            array = np.load(path, mmap_mode="r")
        except BaseException:
            os.close(descriptor)
            raise
        _DESCRIPTORS[id(array)] = descriptor
        weakref.finalize(array, _close_descriptor, id(array))
        _OPEN_ARRAYS[key] = array
    return array


def _close_descriptor(array_id: int) -> None:
    with contextlib.suppress(KeyError, OSError):
        os.close(_DESCRIPTORS.pop(array_id))


def read_rows(array, index=None, sample_ndim: int | None = None):
    """The rows `index` (default: all) of `array`, seen as rows of its last `sample_ndim` axes
    (default: all but the first), as a new array.

    Rows of an `open_array` map (or of a part of one) are read from its file with `preadv`,
    not through the map, which would count every page read in this process's RSS: one epoch
    over a 2.7 GB decoded-image cache showed 2.7 GB more in `top`, and in the OOM killer's score.
    Read this way, the pages stay in the kernel's page cache, shared and reclaimable. Rows in
    a run (index sorted) come in one call. Other arrays are indexed as usual.

    >>> import numpy as np, tempfile
    >>> path = Path(tempfile.mkdtemp()) / "a.npy"
    >>> np.save(path, np.arange(24).reshape(2, 3, 4))
    >>> read_rows(open_array(path)[1], np.array([0, 2]), 1).tolist()
    [[12, 13, 14, 15], [20, 21, 22, 23]]
    >>> read_rows(open_array(path), np.array([5, 1]), 1)[:, 0].tolist()  # (2, 3) rows of 4
    [20, 4]
    >>> read_rows(open_array(path)).shape
    (2, 3, 4)
    """
    import numpy as np

    sample_ndim = array.ndim - 1 if sample_ndim is None else sample_ndim
    leading = array.shape[: array.ndim - sample_ndim]
    sample_shape = array.shape[len(leading) :]
    rows = int(np.prod(leading, dtype=np.int64))
    index = np.arange(rows) if index is None else np.asarray(index, dtype=np.int64)
    if len(index) and (index.min() < 0 or index.max() >= rows):
        raise IndexError(f"rows {index.min()}..{index.max()} are not all in 0..{rows - 1}")
    located = _file_position(array) if hasattr(os, "preadv") else None
    if located is None:  # the leading axes indexed as they are: a reshape may copy the array
        return np.ascontiguousarray(array[np.unravel_index(index, leading)])
    descriptor, start = located
    out = np.empty((len(index), *sample_shape), array.dtype)
    row_bytes = out.itemsize * int(np.prod(sample_shape, dtype=np.int64))
    buffer = memoryview(out.reshape(-1).view(np.uint8))
    runs = np.flatnonzero(np.diff(index) != 1) + 1
    for first, last in zip([0, *runs.tolist()], [*runs.tolist(), len(index)], strict=True):
        _read_exactly(
            descriptor,
            buffer[first * row_bytes : last * row_bytes],
            start + int(index[first]) * row_bytes,
        )
    return out


def _file_position(array) -> tuple[int, int] | None:
    """(descriptor, offset in the file of array's first byte) for a C-ordered part of an
    `open_array` map, else None. A slice of a map keeps its parent's `offset` attribute, so
    the offset is worked out from the data addresses."""
    import numpy as np

    root = array
    while isinstance(root.base, np.ndarray):
        root = root.base
    descriptor = _DESCRIPTORS.get(id(root))
    if descriptor is None or not array.flags.c_contiguous or not isinstance(root, np.memmap):
        return None
    address = array.__array_interface__["data"][0] - root.__array_interface__["data"][0]
    return descriptor, root.offset + address


def _read_exactly(descriptor: int, buffer: memoryview, offset: int) -> None:
    while len(buffer):
        count = os.preadv(descriptor, [buffer], offset)
        if count <= 0:
            raise OSError(f"unexpected end of file at byte {offset}")
        buffer, offset = buffer[count:], offset + count


class RowWriter:
    """A new .npy file of `shape`, written a few rows at a time with file writes, not through a
    memory map (which would count every page written in this process's RSS: a 100,000-image
    cache is 2.7 GB). Rows never written read as zeros. Use as a context manager.

    >>> import numpy as np, tempfile
    >>> path = Path(tempfile.mkdtemp()) / "a.npy"
    >>> with RowWriter(path, np.int64, (2, 3, 2)) as writer:
    ...     writer.write(1, np.array([[1, 2], [3, 4]]))  # rows of 2: rows 1 and 2
    >>> np.load(path)[0].tolist()
    [[0, 0], [1, 2], [3, 4]]
    """

    def __init__(self, path: Path, dtype, shape: tuple[int, ...]) -> None:
        import numpy as np

        # open_memmap writes the header (any .npy format version) and sizes the file sparsely.
        header = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
        self.offset, self.dtype, self.nbytes = header.offset, header.dtype, header.nbytes
        del header
        self.file = open(path, "r+b")  # noqa: SIM115 - closed by __exit__

    def write(self, row: int, values) -> None:
        """Write `values`, a stack of rows, from row `row` of the file seen as rows the shape
        of values[0]."""
        import numpy as np

        values = np.ascontiguousarray(values, dtype=self.dtype)
        offset = row * (values.nbytes // max(1, len(values)))
        if offset + values.nbytes > self.nbytes:
            raise IndexError(f"rows {row}..{row + len(values) - 1} are outside the array")
        self.file.seek(self.offset + offset)
        self.file.write(memoryview(values.reshape(-1).view(np.uint8)))

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *_) -> None:
        self.file.close()


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
