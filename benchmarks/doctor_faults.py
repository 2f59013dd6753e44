"""Does `tlcli doctor` find planted faults, and what does it cost against a finetune? One run.

    python -m benchmarks doctor-faults                     # clothing, with ants as foreign images
    python -m benchmarks doctor-faults --synthetic --image-size 64 --epochs 3   # no ../shared

A copy of the dataset is made in a work folder (symlinks to the original files), and faults
are planted into it, with a fixed seed:

- near-duplicates: a copy of 5% of the images, each cropped to 90% of its width and height at a
  random place, resized to 50%, colour-shifted (each channel x0.9..1.1, +-10 levels) and saved
  as JPEG quality 40; a third of them go to another split (same class), the rest beside the
  original;
- flipped labels: 5% of the training images (none of them duplicated) moved to another class,
  chosen at random;
- wrong-domain files: a few images of another dataset (`--foreign`) put into training classes.

Then, each in its own process, timed from launch to exit: `tlcli finetune` (cold caches), then
`tlcli doctor` (sharing the run's image and feature caches), then `tlcli doctor` again in a
fresh run folder (nothing cached). The script reads doctor.csv and prints:

- duplicates: planted pairs found / planted (recall), and flagged pairs that are not planted
  per 1,000 images (false pairs; the dataset's own near-duplicates count against it, and are
  listed so they can be looked at);
- label issues: planted flips in the flagged list / flips (recall), flips / flagged (precision);
- outliers: wrong-domain files flagged / planted, and other files flagged;
- cost: doctor (caches shared) / finetune, and doctor (cold) / finetune.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from benchmarks.harness import SHARED_DATASETS, SHARED_WEIGHTS, BenchError, need_shared
from benchmarks.synthetic import make_dataset, make_shapes
from tlcli.data.images import list_files

SPLIT_NAMES = {"train": ("train",), "val": ("val", "validation"), "test": ("test",)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=SHARED_DATASETS / "clothing")
    parser.add_argument("--foreign", type=Path, default=SHARED_DATASETS / "hymenoptera/val/ants")
    parser.add_argument("--base", default="mobilenet_v2")
    parser.add_argument("--weights", default=str(SHARED_WEIGHTS))
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--fraction", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path)


def label(args: argparse.Namespace) -> str:
    return "synthetic" if args.synthetic else args.data.name


def run(args: argparse.Namespace) -> dict:
    work = Path(args.workdir or tempfile.mkdtemp(prefix="doctor-faults-"))
    if args.synthetic:
        args.data = make_dataset(work / "source", {"train": 30, "val": 6, "test": 6})
        args.foreign = make_shapes(work / "foreign", {"all": 10}, classes=("disc",)) / "all/disc"
        args.weights = "none"
    else:
        need_shared(args.data, args.foreign)
    data = work / "data"
    if data.exists():
        shutil.rmtree(data)
    planted = plant_faults(args.data, data, args.foreign, args.seed, args.fraction)
    config = write_config(work, data, args)
    timings = {
        "finetune": _timed(["finetune", str(config), "--quiet"], work / "finetune.log"),
        "doctor": _timed(["doctor", str(config), "--quiet"], work / "doctor.log"),
        "doctor_cold": _timed(
            ["doctor", str(config), "--quiet", "--set", "name=cold"], work / "doctor-cold.log"
        ),
    }
    rows = _read_rows(work / "runs" / "faults" / "doctor" / "doctor.csv")
    results = {
        "images": planted["images"],
        "planted": {k: len(v) for k, v in planted.items() if isinstance(v, list)},
        "duplicates": score_duplicates(rows, planted, data),
        "label_issues": score_labels(rows, planted, data),
        "outliers": score_outliers(rows, planted, data),
        "seconds": timings,
        "cost": {
            "doctor_over_finetune": round(timings["doctor"] / timings["finetune"], 2),
            "cold_doctor_over_finetune": round(timings["doctor_cold"] / timings["finetune"], 2),
        },
    }
    print(report(results, args))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return results


def render(records: list[dict]) -> str:
    """Planted faults found, against the targets, and the doctor's cost against a finetune."""
    lines = ["| dataset | planted | found | target |", "|---|---|---|---|"]
    for record in records:
        r, name = record["results"], record["label"]
        dup, lab, out, cost = r["duplicates"], r["label_issues"], r["outliers"], r["cost"]
        lines += [
            f"| {name} ({r['images']:,} images) | {dup['planted']} near-copies (a third in "
            f"another split) | {dup['found']} ({dup['recall']:.1%}), "
            f"{dup['false_pairs_per_1000_images']:.2f} other pairs per 1,000 images "
            "| >= 95%, <= 1 per 1,000 |",
            f"| {name} | {lab['planted']} flipped training labels | {lab['found']} of them in "
            f"the {lab['flagged']} flagged (recall {lab['recall']:.0%}, precision "
            f"{lab['precision']:.0%}) | >= 60%, >= 50% |",
            f"| {name} | {out['planted']} foreign images | {out['found']} flagged as outliers, "
            f"{len(out['other_flagged'])} other files flagged | - |",
            f"| {name} | cost | doctor {r['seconds']['doctor']:.0f} s after a finetune of "
            f"{r['seconds']['finetune']:.0f} s (caches shared): "
            f"**{cost['doctor_over_finetune']:.2f}x**; {r['seconds']['doctor_cold']:.0f} s with "
            f"nothing cached ({cost['cold_doctor_over_finetune']:.2f}x) | <= 1.5x |",
        ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ plant


def plant_faults(
    source: Path, target: Path, foreign: Path | None, seed: int, fraction: float
) -> dict:
    """Copy `source` into `target` (symlinks) with duplicates, flipped labels, foreign files."""
    rng = np.random.default_rng(seed)
    splits = {name: _find_split(source, name) for name in SPLIT_NAMES}
    splits = {name: folder for name, folder in splits.items() if folder is not None}
    classes = sorted(p.name for p in splits["train"].iterdir() if p.is_dir())
    files = [
        (name, cls, path)
        for name, folder in splits.items()
        for cls in classes
        for path in list_files(folder / cls)
    ]
    train = [i for i, (name, _, _) in enumerate(files) if name == "train"]
    flipped = set(rng.choice(train, round(fraction * len(train)), replace=False).tolist())
    rest = [i for i in range(len(files)) if i not in flipped]
    copied = rng.choice(rest, round(fraction * len(files)), replace=False).tolist()
    planted: dict = {"images": len(files), "duplicates": [], "flips": [], "foreign": []}
    for index, (name, cls, path) in enumerate(files):
        label = cls
        if index in flipped:
            label = str(rng.choice([c for c in classes if c != cls]))
            planted["flips"].append({"file": _place(target, name, label, path), "true": cls})
        else:
            _place(target, name, cls, path)
    for position, index in enumerate(copied):
        name, cls, path = files[index]
        others = [n for n in splits if n != name]
        copy_split = str(rng.choice(others)) if position % 3 == 0 and others else name
        copy = target / copy_split / cls / f"dup-{path.stem}.jpg"
        near_copy(path, copy, rng)
        original = target / name / cls / path.name
        planted["duplicates"].append({"original": str(original), "copy": str(copy)})
    if foreign is not None and foreign.is_dir():
        for path in sorted(list_files(foreign))[:10]:
            cls = str(rng.choice(classes))
            planted["foreign"].append(_place(target, "train", cls, path, prefix="foreign-"))
    return planted


def near_copy(source: Path, target: Path, rng: np.random.Generator) -> None:
    """90% crop at a random place, 50% size, mild colour shift, JPEG quality 40."""
    with Image.open(source) as opened:
        image = opened.convert("RGB")
    width, height = image.size
    crop_w, crop_h = max(1, int(width * 0.9)), max(1, int(height * 0.9))
    left = int(rng.integers(0, width - crop_w + 1))
    top = int(rng.integers(0, height - crop_h + 1))
    image = image.crop((left, top, left + crop_w, top + crop_h))
    image = image.resize((max(1, crop_w // 2), max(1, crop_h // 2)), Image.BILINEAR)
    pixels = np.asarray(image, np.float32) * rng.uniform(0.9, 1.1, 3) + rng.uniform(-10, 10)
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(target, quality=40)


def _find_split(source: Path, name: str) -> Path | None:
    for candidate in SPLIT_NAMES[name]:
        if (source / candidate).is_dir():
            return source / candidate
    return None


def _place(target: Path, split: str, cls: str, path: Path, prefix: str = "") -> str:
    link = target / split / cls / f"{prefix}{path.name}"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(path.resolve())
    return str(link)


def write_config(work: Path, data: Path, args: argparse.Namespace) -> Path:
    config = {
        "name": "faults",
        "output_dir": str(work / "runs"),
        "data": {
            "train_dir": str(data / "train"),
            "image_size": [args.image_size, args.image_size],
        },
        "model": {"base": args.base, "weights": args.weights},
        "finetune": {"epochs": args.epochs},
    }
    for name in ("val", "test"):
        if (data / name).is_dir():
            config["data"][f"{name}_dir"] = str(data / name)
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# ------------------------------------------------------------------------------------ score


def _timed(arguments: list[str], log: Path) -> float:
    started = time.perf_counter()
    with log.open("w") as out:
        result = subprocess.run(
            [sys.executable, "-m", "tlcli", *arguments],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            check=False,
        )
    if result.returncode not in (0, 1):
        raise BenchError(f"tlcli {' '.join(arguments)} failed: see {log}")
    return round(time.perf_counter() - started, 2)


def _read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def score_duplicates(rows: list[dict], planted: dict, data: Path) -> dict:
    pairs = {
        frozenset((d["original"], d["copy"])) for d in planted["duplicates"]
    }  # fmt: skip
    flagged = {
        frozenset((row["file"], row["other"])) for row in rows if row["issue"] == "near-duplicate"
    }
    false = sorted(tuple(sorted(pair)) for pair in flagged - pairs)
    images = planted["images"] + len(planted["duplicates"]) + len(planted["foreign"])
    return {
        "planted": len(pairs),
        "found": len(pairs & flagged),
        "recall": round(len(pairs & flagged) / max(len(pairs), 1), 4),
        "flagged": len(flagged),
        "false_pairs": len(false),
        "false_pairs_per_1000_images": round(1000 * len(false) / images, 3),
        "false_pair_list": [[_short(a, data), _short(b, data)] for a, b in false],
        "missed": [
            [_short(d["original"], data), _short(d["copy"], data)]
            for d in planted["duplicates"]
            if frozenset((d["original"], d["copy"])) not in flagged
        ],
    }


def score_labels(rows: list[dict], planted: dict, data: Path) -> dict:
    flips = {f["file"] for f in planted["flips"]}
    flagged = {row["file"] for row in rows if row["issue"] == "label"}
    found = flips & flagged
    return {
        "planted": len(flips),
        "flagged": len(flagged),
        "found": len(found),
        "recall": round(len(found) / max(len(flips), 1), 4),
        "precision": round(len(found) / max(len(flagged), 1), 4),
    }


def score_outliers(rows: list[dict], planted: dict, data: Path) -> dict:
    foreign = set(planted["foreign"])
    flagged = {row["file"] for row in rows if row["issue"] == "outlier"}
    return {
        "planted": len(foreign),
        "found": len(foreign & flagged),
        "other_flagged": sorted(_short(f, data) for f in flagged - foreign),
    }


def _short(path: str, data: Path) -> str:
    return str(Path(path).relative_to(data)) if path.startswith(str(data)) else path


def report(results: dict, args: argparse.Namespace) -> str:
    dup, lab, out, cost = (
        results["duplicates"],
        results["label_issues"],
        results["outliers"],
        results["cost"],
    )
    seconds = results["seconds"]
    return "\n".join(
        [
            f"doctor on planted faults: {args.data} "
            f"({results['images']} images, {args.base}, {args.image_size} px)",
            f"  near-duplicates  {dup['found']}/{dup['planted']} found "
            f"(recall {dup['recall']:.3f}); {dup['false_pairs']} false pair(s): "
            f"{dup['false_pairs_per_1000_images']:.2f} per 1,000 images",
            f"  flipped labels   {lab['found']}/{lab['planted']} in the flagged list "
            f"(recall {lab['recall']:.3f}); {lab['flagged']} flagged "
            f"(precision {lab['precision']:.3f})",
            f"  wrong-domain     {out['found']}/{out['planted']} flagged as outliers; "
            f"{len(out['other_flagged'])} other file(s) flagged",
            f"  cost             finetune {seconds['finetune']:.1f} s, doctor (caches shared) "
            f"{seconds['doctor']:.1f} s = {cost['doctor_over_finetune']:.2f}x, "
            f"doctor (cold) {seconds['doctor_cold']:.1f} s = "
            f"{cost['cold_doctor_over_finetune']:.2f}x",
        ]
    )
