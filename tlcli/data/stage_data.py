"""A stage's data, ready to train on: splits found, images decoded, problems reported.

`load_stage_data` does everything that can fail because of the dataset, before any model is
built: classes checked across folders, every image decoded (odd ones converted, broken ones
skipped), and a report written that lists each skipped or converted file.

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
from tlcli.data.image_cache import DecodedFolder, decode_folder
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


@dataclass
class DecodedSplit:
    """The readable images of one split: rows of `pixels`, with their labels and paths."""

    name: str
    source: str
    pixels: np.ndarray  # the whole folder's decoded array; index it with `rows`
    rows: np.ndarray
    labels: np.ndarray
    paths: list[Path]
    key: str = ""  # identifies the pixels: the decoded folder's content key and the rows

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
    """Find, decode and check a stage's data; write data_report.json and split.csv.

    `require_trainable=False` (the doctor) accepts one class, or a class without readable
    training images, which training refuses.
    """
    started = time.perf_counter()
    splits = find_splits(data, seed)
    classes = splits["train"].folder.classes
    decoded: dict[Path, DecodedFolder] = {}
    for split in splits.values():
        folder = split.folder
        if folder.root not in decoded:
            tick = progress(f"Reading {folder.root}", len(folder.files)) if progress else None
            decoded[folder.root] = decode_folder(folder, image_size, cache_dir, tick)
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
        pixels=decoded.pixels,
        rows=rows,
        labels=split.folder.labels[rows],
        paths=[split.folder.files[i] for i in rows],
        key=f"{decoded.key}:{hashlib.sha1(rows.tobytes()).hexdigest()[:16]}",
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
