"""Check a config's datasets before training: counts, imbalance, unreadable files, duplicates.

Duplicates are files with identical bytes: within a split they over-weight an image, across
splits they leak training images into validation or test scores. Nothing is trained or written.

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
    rows = []
    for name, split in splits.items():
        counts = split.class_counts()
        rows.append([name, split.source, str(len(split))] + [str(counts[c]) for c in classes])
    console.table(f"{title}: {len(classes)} classes", ["split", "from", "files", *classes], rows)

    problems: list[str] = []
    imbalanced = imbalance(np.array(list(splits["train"].class_counts().values())))
    if imbalanced:
        problems.append(f"{title}: {imbalanced}; consider data.class_weight: balanced")
    all_files = sorted({p for split in splits.values() for p in split.paths})
    with console.progress() as progress:
        tick = progress(f"Checking {title} files", len(all_files))
        results = {}
        for path, result in zip(all_files, map_in_threads(_inspect, all_files), strict=True):
            results[path] = result
            tick(1)
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


def _inspect(path: Path) -> tuple[str, str | None]:
    """(digest of the bytes, why it cannot be used or None)."""
    digest = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
    return digest, decode_image(path, (32, 32)).error
