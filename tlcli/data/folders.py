"""Find the labelled images of a dataset and divide them into train / val / test.

A split folder holds one sub-folder per class. `val_split` and `test_split` carve splits out of
`train_dir` by hashing each file's path with the seed: the assignment is deterministic, and a
file keeps its split when other files are added or removed.

>>> folder = scan_folder(Path("sample_data/target/train"))
>>> folder.classes, len(folder.files)
(['chevron', 'frame', 'ring', 'teardrop'], 48)
>>> splits = carve_splits(folder, val=0.25, test=0.0, seed=42)
>>> {name: len(split) for name, split in splits.items()}
{'train': 39, 'val': 9}
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tlcli.data.images import list_files
from tlcli.errors import DataError


@dataclass
class Folder:
    """One scanned split folder: its classes and every candidate file with its class index."""

    root: Path
    classes: list[str]
    files: list[Path]
    labels: np.ndarray  # int32, one per file
    ignored: list[Path]  # files lying directly in the root, outside any class folder

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


@dataclass
class Split:
    """A split: which files of a folder it holds (positions into `folder.files`)."""

    name: str
    folder: Folder
    rows: np.ndarray  # int64 positions
    source: str  # where it came from, for reports: "val_dir" or "20% of train_dir"

    @property
    def labels(self) -> np.ndarray:
        return self.folder.labels[self.rows]

    @property
    def paths(self) -> list[Path]:
        return [self.folder.files[i] for i in self.rows]

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.folder.classes))
        return {name: int(n) for name, n in zip(self.folder.classes, counts, strict=True)}

    def __len__(self) -> int:
        return len(self.rows)


def scan_folder(root: Path, classes: list[str] | None = None) -> Folder:
    """List the class folders and files under `root`; `classes` is what the folder must have."""
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise DataError(f"{root}: no class folders (expected one sub-folder of images per class)")
    if classes is not None and found != classes:
        missing = sorted(set(classes) - set(found))
        extra = sorted(set(found) - set(classes))
        parts = [
            f"lacks {', '.join(missing)}" if missing else "",
            f"has extra {', '.join(extra)}" if extra else "",
        ]
        raise DataError(
            f"{root}: classes differ from the training folder: {'; '.join(p for p in parts if p)}"
        )
    files: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(found):
        class_files = list_files(root / name)
        if not class_files:
            raise DataError(f"{root / name}: class '{name}' has no files")
        files += class_files
        labels += [index] * len(class_files)
    ignored = sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
    return Folder(root, found, files, np.asarray(labels, dtype=np.int32), ignored)


def carve_splits(folder: Folder, val: float, test: float, seed: int) -> dict[str, Split]:
    """Divide a folder into train (and val, test when their fraction is above 0).

    Each file's place comes from a hash of the seed and its relative path: test when below
    `test`, val when below `test + val`. A class that would get no val (or test) image gives up
    its lowest-hashed training image, when it has at least three.
    """
    scores = np.array([_unit_hash(seed, folder.relative(p)) for p in folder.files])
    place = np.full(len(scores), "train", dtype=object)
    place[scores < test + val] = "val"
    place[scores < test] = "test"
    for name, fraction in (("test", test), ("val", val)):
        if fraction <= 0:
            continue
        for label in range(len(folder.classes)):
            in_class = folder.labels == label
            train_rows = np.flatnonzero(in_class & (place == "train"))
            if not np.any(in_class & (place == name)) and len(train_rows) >= 3:
                place[train_rows[np.argmin(scores[train_rows])]] = name
    source = {
        "train": "train_dir",
        "val": f"{val:.0%} of train_dir",
        "test": f"{test:.0%} of train_dir",
    }
    wanted = ["train"] + [n for n, f in (("val", val), ("test", test)) if f > 0]
    return {n: Split(n, folder, np.flatnonzero(place == n), source[n]) for n in wanted}


def _unit_hash(seed: int, text: str) -> float:
    digest = hashlib.sha1(f"{seed}:{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64
