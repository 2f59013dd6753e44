"""Every image of a folder decoded once, in parallel, into a uint8 row file: training reads
batches of rows from it instead of decoding image files every epoch, and every unreadable file
is found before the first epoch. `load_stage_data` gives a stage its data this way.

An entry is keyed by the image size, the decoder version and each file's path, size and mtime:
any change to the files builds a new one. It takes files x height x width x 3 bytes on disk.

>>> import tempfile
>>> from tlcli.config import DataConfig
>>> data_cfg = DataConfig(train_dir=Path("sample_data/target/train"))
>>> work = Path(tempfile.mkdtemp())
>>> data = load_stage_data(data_cfg, (32, 32), 42, work / "cache", work)
>>> data.classes, {name: len(split) for name, split in data.splits.items()}
(['chevron', 'frame', 'ring', 'teardrop'], {'train': 41, 'val': 7})
>>> sorted(p.name for p in work.iterdir())
['cache', 'data_report.json', 'split.csv']
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tlcli.cache.rows import RowWriter, open_array, read_rows
from tlcli.cache.store import cached_entry, mark_used
from tlcli.config import DataConfig
from tlcli.data.folders import Folder, Split
from tlcli.data.images import decode_many
from tlcli.data.stage_data import (
    DecodedFolder,
    Progress,
    StageData,
    checked_stage_data,
    find_splits,
)
from tlcli.files import atomic_path, write_json

# Bump when decode_image changes what it produces, so old entries are rebuilt.
DECODER_VERSION = 3


def load_stage_data(
    data: DataConfig,
    image_size: tuple[int, int],
    seed: int,
    cache_dir: Path,
    report_dir: Path,
    progress: Progress | None = None,
    *,
    require_trainable: bool = True,
) -> StageData:
    """Find, decode (or load from the cache) and check a stage's data; write data_report.json
    and split.csv (`tlcli.data.stage_data.checked_stage_data`)."""
    started = time.perf_counter()
    splits = find_splits(data, seed)
    decoded = decode_splits(splits, image_size, cache_dir, progress)
    return checked_stage_data(
        splits, decoded, report_dir, started, require_trainable=require_trainable
    )


def decode_splits(
    splits: dict[str, Split],
    size: tuple[int, int],
    cache_dir: Path,
    progress: Progress | None = None,
) -> dict[Path, DecodedFolder]:
    """Every folder the splits come from, decoded at `size` (height, width), by folder root."""
    decoded: dict[Path, DecodedFolder] = {}
    for split in splits.values():
        folder = split.folder
        if folder.root not in decoded:
            tick = progress(f"Reading {folder.root}", len(folder.files)) if progress else None
            decoded[folder.root] = decode_folder(folder, size, cache_dir, tick)
    return decoded


def decode_folder(
    folder: Folder,
    size: tuple[int, int],
    cache_dir: Path,
    on_progress: Callable[[int], None] | None = None,
) -> DecodedFolder:
    """Decode (or load from the cache) every file of `folder` at `size` (height, width)."""
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
    return DecodedFolder(folder, pixels, ok, notes, errors, key, reader=read_rows)


def _content_key(folder: Folder, size: tuple[int, int]) -> str:
    digest = hashlib.sha1(f"v{DECODER_VERSION}:{size}".encode())
    for path in folder.files:
        stat = path.stat()
        digest.update(f"{folder.relative(path)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]
