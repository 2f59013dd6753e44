"""A stage's data, ready to train on: the splits found, their decoded rows, the checks and
report that run before any model is built.

`find_splits` scans the folders; `tlcli.cache.decoded_images` decodes them (once, cached);
`checked_stage_data` checks the classes, writes data_report.json and split.csv, and returns the
`StageData` a stage trains on (`tlcli.cache.decoded_images.load_stage_data` does all three).

>>> split = DecodedSplit("train", "train_dir", np.arange(12).reshape(6, 2), np.array([4, 1]),
...                      np.array([0, 1]), [])
>>> split.reader(split.array, split.rows).tolist()
[[8, 9], [2, 3]]
"""

from __future__ import annotations

import csv
import hashlib
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tlcli.config import DataConfig
from tlcli.data.folders import Folder, Split, carve_splits, scan_folder
from tlcli.errors import DataError
from tlcli.files import write_json, write_text
from tlcli.rundir import DATA_REPORT_FILE, SPLIT_FILE

Progress = Callable[[str, int], Callable[[int], None]]
IMBALANCE_RATIO = 3.0


def imbalance(counts: np.ndarray) -> str | None:
    """The warning for training counts per class whose largest is >= 3x the smallest, or None.

    A class with no images at all is the extreme case, not an exception to the rule.

    >>> imbalance(np.array([89, 30, 31])), imbalance(np.array([90, 29]))
    (None, 'classes are imbalanced in train (90 vs 29 images)')
    >>> imbalance(np.array([5, 0]))
    'classes are imbalanced in train (5 vs 0 images)'
    """
    counts = np.asarray(counts)
    if counts.max() < IMBALANCE_RATIO * counts.min() or counts.max() == 0:
        return None
    return f"classes are imbalanced in train ({counts.max()} vs {counts.min()} images)"


def index_rows(array, index=None, sample_ndim: int | None = None) -> np.ndarray:
    """The rows `index` (default: all) of `array`, seen as rows of its last `sample_ndim` axes
    (default: all but the first), as a new contiguous array.

    >>> index_rows(np.arange(12).reshape(2, 3, 2), np.array([4, 0]), 1).tolist()
    [[8, 9], [0, 1]]
    """
    sample_ndim = array.ndim - 1 if sample_ndim is None else sample_ndim
    leading = array.shape[: array.ndim - sample_ndim]
    rows = int(np.prod(leading, dtype=np.int64))
    index = np.arange(rows) if index is None else np.asarray(index, dtype=np.int64)
    if len(index) and (index.min() < 0 or index.max() >= rows):
        raise IndexError(f"rows {index.min()}..{index.max()} are not all in 0..{rows - 1}")
    # the leading axes indexed as they are: a reshape may copy the array
    return np.ascontiguousarray(array[np.unravel_index(index, leading)])


# How rows are read from an array: `index_rows`, or a cache's reader of its row files
# (`tlcli.cache.rows.read_rows`), which returns the same values.
RowReader = Callable[..., np.ndarray]


@dataclass
class DecodedFolder:
    """Pixels of every file of a folder; rows of skipped files are zero and `ok` is False."""

    folder: Folder
    pixels: np.ndarray  # (files, height, width, 3) uint8, usually a read-only memory map
    ok: np.ndarray  # bool per file
    notes: dict[int, list[str]]  # file position -> conversions applied
    errors: dict[int, str]  # file position -> why it was skipped
    key: str  # changes whenever any file, the size or the decoder changes
    reader: RowReader = index_rows


@dataclass
class DecodedSplit:
    """One split ready to train on: rows of `array` (decoded images, or the cached features
    of those images), with their labels and paths."""

    name: str
    source: str
    array: np.ndarray  # the whole folder's images or features; index it with `rows`
    rows: np.ndarray
    labels: np.ndarray
    paths: list[Path]
    key: str = ""  # identifies the images: the decoded folder's content key and the rows
    reader: RowReader = index_rows  # reads rows of `array` (see RowReader)

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class StageData:
    classes: list[str]
    splits: dict[str, DecodedSplit]
    report: dict
    seconds: float = 0.0  # finding, decoding (or loading from cache) and checking
    started_at: float = 0.0  # time.time() when the stage began its work (set by the stage)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def find_splits(data: DataConfig, seed: int) -> dict[str, Split]:
    """The configured splits, scanned but not decoded. Raises DataError on class mismatches."""
    train = scan_folder(data.train_dir)
    splits = carve_splits(train, val=data.val_split or 0.0, test=data.test_split or 0.0, seed=seed)
    for name, folder_path in (("val", data.val_dir), ("test", data.test_dir)):
        if folder_path is not None:
            folder = scan_folder(folder_path, classes=train.classes)
            rows = np.arange(len(folder.files))
            splits[name] = Split(name, folder, rows, f"{name}_dir")
    return splits


def checked_stage_data(
    splits: dict[str, Split],
    decoded: dict[Path, DecodedFolder],
    report_dir: Path,
    started: float,
    *,
    require_trainable: bool = True,
) -> StageData:
    """The readable rows of each split (of the folders `decoded`, by root), checked; writes
    data_report.json and split.csv. `started` is the perf_counter() the stage's data work began.

    `require_trainable=False` (the doctor) accepts one class, or a class without readable
    training images, which training refuses.
    """
    classes = splits["train"].folder.classes
    ready = {name: _readable(split, decoded[split.folder.root]) for name, split in splits.items()}
    report = _report(classes, splits, ready, decoded)
    write_json(report_dir / DATA_REPORT_FILE, report)
    write_text(report_dir / SPLIT_FILE, _split_csv(splits, ready))
    if require_trainable:
        _check_trainable(classes, ready, report_dir)
    if "val" in ready and len(ready["val"]) == 0:
        del ready["val"]
    return StageData(classes, ready, report, time.perf_counter() - started)


def _readable(split: Split, decoded: DecodedFolder) -> DecodedSplit:
    rows = split.rows[decoded.ok[split.rows]]
    return DecodedSplit(
        name=split.name,
        source=split.source,
        array=decoded.pixels,
        rows=rows,
        labels=split.folder.labels[rows],
        paths=[split.folder.files[i] for i in rows],
        key=f"{decoded.key}:{hashlib.sha1(rows.tobytes()).hexdigest()[:16]}",
        reader=decoded.reader,
    )


def _check_trainable(classes: list[str], ready: dict[str, DecodedSplit], report_dir: Path) -> None:
    counts = np.bincount(ready["train"].labels, minlength=len(classes))
    empty = [name for name, n in zip(classes, counts, strict=True) if n == 0]
    if empty:
        raise DataError(
            f"no readable training images for class {', '.join(empty)} "
            f"(see {report_dir / DATA_REPORT_FILE})"
        )
    if len(classes) < 2:
        raise DataError(f"only one class ({classes[0]}): a classifier needs at least two")


def _report(
    classes: list[str],
    splits: dict[str, Split],
    ready: dict[str, DecodedSplit],
    decoded: dict[Path, DecodedFolder],
) -> dict:
    skipped, converted, ignored = [], [], []
    for folder_decoded in decoded.values():
        folder: Folder = folder_decoded.folder
        skipped += [
            {"path": str(folder.files[i]), "reason": reason}
            for i, reason in sorted(folder_decoded.errors.items())
        ]
        converted += [
            {"path": str(folder.files[i]), "notes": notes}
            for i, notes in sorted(folder_decoded.notes.items())
        ]
        ignored += [{"path": str(p), "reason": "not inside a class folder"} for p in folder.ignored]
    split_report = {}
    warnings = []
    for name, split in ready.items():
        counts = np.bincount(split.labels, minlength=len(classes))
        split_report[name] = {
            "source": splits[name].source,
            "images": len(split),
            "counts": {c: int(n) for c, n in zip(classes, counts, strict=True)},
        }
        missing = [c for c, n in zip(classes, counts, strict=True) if n == 0]
        if missing and name != "train":
            warnings.append(f"{name} has no images of class {', '.join(missing)}")
    imbalanced = imbalance(np.bincount(ready["train"].labels, minlength=len(classes)))
    if imbalanced:
        warnings.append(f"{imbalanced}: consider data.class_weight: balanced")
    return {
        "classes": classes,
        "splits": split_report,
        "skipped": skipped,
        "converted": converted,
        "ignored": ignored,
        "warnings": warnings,
    }


def _split_csv(splits: dict[str, Split], ready: dict[str, DecodedSplit]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["path", "label", "split"])
    for name, split in ready.items():
        classes = splits[name].folder.classes
        for path, label in zip(split.paths, split.labels, strict=True):
            writer.writerow([str(path), classes[label], name])
    return out.getvalue()
