"""Decode every image of a folder once, in parallel, into a uint8 array on disk.

Training then reads batches of rows from this file (`tlcli.files.read_rows`: the OS keeps it in its
page cache, outside the process's RSS, whatever the dataset size) instead of decoding JPEGs every
epoch, and every unreadable file is found before the first epoch. The cache is keyed by the image
size, the decoder version and each file's path, size and mtime: any change to the files rebuilds
it. Disk use is files x height x width x 3 bytes (10,000 images at 224x224: 1.5 GB). Runs and
processes may share one cache folder (`cache_dir`): one process decodes a folder while the others
wait for it, and an entry is deleted only after nobody used it for a while
(`tlcli.files.remove_stale`).

>>> import tempfile
>>> from tlcli.data.folders import scan_folder
>>> folder = scan_folder(Path("sample_data/target/val"))
>>> decoded = decode_folder(folder, (32, 32), Path(tempfile.mkdtemp()))
>>> decoded.pixels.shape, decoded.pixels.dtype, int(decoded.ok.sum())
((48, 32, 32, 3), dtype('uint8'), 48)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tlcli.data.folders import Folder
from tlcli.data.images import decode_many
from tlcli.files import RowWriter, atomic_path, cached_entry, mark_used, open_array, write_json

# Bump when decode_image changes what it produces, so old caches are rebuilt.
DECODER_VERSION = 3


@dataclass
class DecodedFolder:
    """Pixels of every file of a folder; rows of skipped files are zero and `ok` is False."""

    folder: Folder
    pixels: np.ndarray  # (files, height, width, 3) uint8, usually a read-only memory map
    ok: np.ndarray  # bool per file
    notes: dict[int, list[str]]  # file position -> conversions applied
    errors: dict[int, str]  # file position -> why it was skipped
    key: str  # changes whenever any file, the size or the decoder changes


def decode_folder(
    folder: Folder,
    size: tuple[int, int],
    cache_dir: Path,
    on_progress: Callable[[int], None] | None = None,
) -> DecodedFolder:
    """Decode (or load from cache) every file of `folder` at `size` (height, width)."""
    slot = hashlib.sha1(str(folder.root.resolve()).encode()).hexdigest()[:10]
    key = _content_key(folder, size)
    array_path = cache_dir / f"images-{slot}-{key}.npy"
    decoded, found = cached_entry(
        array_path,
        lambda: _load_cached(folder, size, array_path, key),
        lambda: _decode_into(folder, size, array_path, key, on_progress),
        family=f"images-{slot}-",
    )
    if found and on_progress:
        on_progress(len(folder.files))
    return decoded


def _load_cached(
    folder: Folder, size: tuple[int, int], array_path: Path, key: str
) -> DecodedFolder | None:
    """The cached entry, or None when it is missing, incomplete or of another shape."""
    meta_path = array_path.with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text())
        pixels = open_array(array_path)
    except (OSError, ValueError):  # not there (yet), or removed between the check and the open
        return None
    if pixels.shape != (len(folder.files), *size, 3):
        return None
    mark_used(array_path)
    return _from_meta(folder, pixels, meta, key)


def _decode_into(
    folder: Folder,
    size: tuple[int, int],
    array_path: Path,
    key: str,
    on_progress: Callable[[int], None] | None,
) -> DecodedFolder:
    meta_path = array_path.with_suffix(".json")
    notes: dict[int, list[str]] = {}
    errors: dict[int, str] = {}
    shape = (len(folder.files), *size, 3)
    with atomic_path(array_path) as tmp, RowWriter(tmp, np.uint8, shape) as pixels:
        for position, decoded in enumerate(decode_many(folder.files, size)):
            if decoded.error is not None:
                errors[position] = decoded.error
            else:
                pixels.write(position, decoded.pixels[np.newaxis])
                if decoded.notes:
                    notes[position] = decoded.notes
            if on_progress:
                on_progress(1)
    write_json(meta_path, {"notes": notes, "errors": errors, "size": list(size)})
    meta = {"notes": notes, "errors": errors}
    return _from_meta(folder, open_array(array_path), meta, key)


def _from_meta(folder: Folder, pixels: np.ndarray, meta: dict, key: str) -> DecodedFolder:
    notes = {int(k): v for k, v in meta["notes"].items()}
    errors = {int(k): v for k, v in meta["errors"].items()}
    ok = np.ones(len(folder.files), dtype=bool)
    ok[list(errors)] = False
    return DecodedFolder(folder, pixels, ok, notes, errors, key)


def _content_key(folder: Folder, size: tuple[int, int]) -> str:
    digest = hashlib.sha1(f"v{DECODER_VERSION}:{size}".encode())
    for path in folder.files:
        stat = path.stat()
        digest.update(f"{folder.relative(path)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]
