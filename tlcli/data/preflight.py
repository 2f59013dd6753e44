"""Check a config's datasets before training: counts, imbalance, unreadable files, duplicates.

Counts are of usable images (those that decode), one row per class and a column per split;
files that cannot be used are counted apart and listed. Duplicates are files with identical
bytes: within a split they over-weight an image, across splits they leak training images into
validation or test scores. Nothing is trained or written.

>>> import io
>>> from tlcli.config import load_config
>>> report = io.StringIO()
>>> run_preflight(load_config("configs/quickstart.yaml"), Console(file=report, width=100))
[]
>>> report.getvalue().splitlines()[-1]
'no problems found'

"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

import numpy as np

from tlcli.config import Config, DataConfig
from tlcli.console import Console
from tlcli.data.folders import Split
from tlcli.data.images import decode_image, map_in_threads
from tlcli.data.stage_data import find_splits, imbalance


def run_preflight(cfg: Config, console: Console) -> list[str]:
    """Print a report per dataset; return the problems found (empty when all is well)."""
    datasets = [("target", cfg.data)]
    if cfg.pretrain is not None:
        datasets.insert(0, ("source (pretrain)", cfg.stage_data("pretrain")))
    problems: list[str] = []
    for title, data in datasets:
        problems += _check_dataset(title, data, cfg.seed, console)
    if problems:
        console.result(f"{len(problems)} problem(s) found", tone="bad")
    else:
        console.result("no problems found", tone="good")
    return problems


def _check_dataset(title: str, data: DataConfig, seed: int, console: Console) -> list[str]:
    splits = find_splits(data, seed)
    classes = splits["train"].folder.classes
    all_files = sorted({p for split in splits.values() for p in split.paths})
    with console.progress() as progress:
        tick = progress(f"Checking {title} files", len(all_files))
        results = {}
        for path, result in zip(all_files, map_in_threads(_inspect, all_files), strict=True):
            results[path] = result
            tick(1)
    usable = {name: _usable_counts(split, results) for name, split in splits.items()}
    _print_counts(title, classes, splits, usable, console)

    problems: list[str] = []
    imbalanced = imbalance(usable["train"])
    if imbalanced:
        problems.append(f"{title}: {imbalanced}; consider data.class_weight: balanced")
    for path, (_, error) in sorted(results.items()):
        if error:
            problems.append(f"{title}: unreadable, will be skipped: {path} ({error})")
    by_digest: dict[str, list[tuple[str, Path]]] = defaultdict(list)
    for name, split in splits.items():
        for path in split.paths:
            by_digest[results[path][0]].append((name, path))
    for group in by_digest.values():
        if len(group) > 1:
            names = sorted({name for name, _ in group})
            kind = "leak across splits" if len(names) > 1 else f"duplicates within {names[0]}"
            listed = ", ".join(f"{p} ({n})" for n, p in group)
            problems.append(f"{title}: identical files, {kind}: {listed}")
    for problem in problems:
        console.warn(problem)
    return problems


def _usable_counts(split: Split, results: dict[Path, tuple[str, str | None]]) -> np.ndarray:
    """Images per class that decode: what training will use."""
    usable = np.array([results[path][1] is None for path in split.paths], dtype=bool)
    return np.bincount(split.labels[usable], minlength=len(split.folder.classes))


def _print_counts(
    title: str,
    classes: list[str],
    splits: dict[str, Split],
    usable: dict[str, np.ndarray],
    console: Console,
) -> None:
    """One row per class and a column per split, so that it reads in 80 columns whatever the
    number of classes or the length of their names; unusable files are counted apart."""
    names = list(splits)
    rows = [[name, *(str(usable[s][i]) for s in names)] for i, name in enumerate(classes)]
    totals = [int(usable[s].sum()) for s in names]
    footer = [["usable images", *map(str, totals)]]
    unusable = [len(splits[s]) - total for s, total in zip(names, totals, strict=True)]
    if any(unusable):
        footer.append(["unusable files", *map(str, unusable)])
    console.table(f"{title}: {len(classes)} classes", ["class", *names], rows, footer=footer)
    console.info("splits: " + ", ".join(f"{s} from {splits[s].source}" for s in names))


def _inspect(path: Path) -> tuple[str, str | None]:
    """(digest of the bytes, why it cannot be used or None)."""
    digest = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
    return digest, decode_image(path, (32, 32)).error
