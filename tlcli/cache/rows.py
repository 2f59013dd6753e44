"""Row files: the .npy arrays the cache keeps (decoded images, features), written and read a few
rows at a time with file reads and writes, so that their pages stay in the kernel's page cache
and out of the process's RSS.

A process maps each file once (`open_array`), however many stages, trials or evaluations read
it: every map of a file counts the pages it touched in the process's RSS again.

>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "a.npy"
>>> with RowWriter(path, np.int64, (2, 3, 2)) as writer:
...     writer.write(1, np.array([[1, 2], [3, 4]]))  # rows of 2: rows 1 and 2; others stay 0
>>> read_rows(open_array(path), np.array([2, 1]), 1).tolist()  # the (2, 3) rows of 2
[[3, 4], [1, 2]]
"""

from __future__ import annotations

import contextlib
import os
import weakref
from pathlib import Path

import numpy as np

from tlcli.data.stage_data import index_rows

# Shared while any reader holds it, so a file is mapped once per process.
_OPEN_ARRAYS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
# A descriptor per open map, for `read_rows`; closed when its map is collected.
_DESCRIPTORS: dict[int, int] = {}


def open_array(path: Path) -> np.memmap:
    """The .npy file at `path` as a read-only memory map, one map per file per process.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "a.npy"
    >>> np.save(path, np.arange(3))
    >>> open_array(path) is open_array(path), open_array(path).tolist()
    (True, [0, 1, 2])
    """
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


def read_rows(array, index=None, sample_ndim: int | None = None) -> np.ndarray:
    """The rows `index` (default: all) of `array`, seen as rows of its last `sample_ndim` axes
    (default: all but the first), as a new array.

    Rows of an `open_array` map (or of a part of one) are read from its file with `preadv`,
    not through the map, which would count every page read in this process's RSS. Rows in a
    run (index sorted) come in one call. Other arrays are indexed as usual (`index_rows`).

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "a.npy"
    >>> np.save(path, np.arange(24).reshape(2, 3, 4))
    >>> read_rows(open_array(path)[1], np.array([0, 2]), 1).tolist()
    [[12, 13, 14, 15], [20, 21, 22, 23]]
    >>> read_rows(open_array(path), np.array([5, 1]), 1)[:, 0].tolist()  # (2, 3) rows of 4
    [20, 4]
    >>> read_rows(open_array(path)).shape
    (2, 3, 4)
    """
    sample_ndim = array.ndim - 1 if sample_ndim is None else sample_ndim
    leading = array.shape[: array.ndim - sample_ndim]
    sample_shape = array.shape[len(leading) :]
    rows = int(np.prod(leading, dtype=np.int64))
    index = np.arange(rows) if index is None else np.asarray(index, dtype=np.int64)
    if len(index) and (index.min() < 0 or index.max() >= rows):
        raise IndexError(f"rows {index.min()}..{index.max()} are not all in 0..{rows - 1}")
    located = _file_position(array) if hasattr(os, "preadv") else None
    if located is None:
        return index_rows(array, index, sample_ndim)
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
    memory map (which would count every page written in this process's RSS). Rows never written
    read as zeros. Use as a context manager (see the module's example)."""

    def __init__(self, path: Path, dtype, shape: tuple[int, ...]) -> None:
        # open_memmap writes the header (any .npy format version) and sizes the file sparsely.
        header = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
        self.offset, self.dtype, self.nbytes = header.offset, header.dtype, header.nbytes
        del header
        self.file = open(path, "r+b")  # noqa: SIM115 - closed by __exit__

    def write(self, row: int, values) -> None:
        """Write `values`, a stack of rows, from row `row` of the file seen as rows the shape
        of values[0]."""
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
