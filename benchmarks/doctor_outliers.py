"""Does the doctor's outlier check stay quiet on clean photos and find planted non-photos?

    python -m benchmarks doctor-outliers                                  # hymenoptera
    python -m benchmarks doctor-outliers --data ../shared/datasets/clothing
    python -m benchmarks doctor-outliers --synthetic --image-size 64      # no ../shared

A copy of the dataset (symlinks to its files) gets one image of each of KINDS in a training
class chosen at random (fixed seed): uniform noise, 16 x 16 block noise, a black, a white and a
grey frame, a page of text, a line drawing, a bar chart. The frozen base's features of every
image come from tlcli's own path (`tlcli.insight.features.target_features`, cached in the work
folder); the outlier check runs on the dataset's own images alone (clean: every image it flags
is a false alarm, unless it is a broken file such as hymenoptera's placeholder GIF) and with
the planted ones (recall). Prints both. The default weights are MobileNetV2's ImageNet weights
in ../shared; `--synthetic` plants into photos-like images the suite makes, with random weights.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageDraw

from benchmarks.harness import SHARED_DATASETS, SHARED_WEIGHTS, need_shared
from benchmarks.synthetic import make_dataset
from tlcli.data.images import list_files

KINDS = ("noise", "block-noise", "black", "white", "grey", "document", "drawing", "chart")
WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "for",
    "on",
    "that",
    "with",
    "as",
    "by",
    "this",
    "be",
    "are",
    "from",
    "at",
    "or",
    "an",
    "was",
]
SPLITS = ("train", "val", "validation", "test")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=SHARED_DATASETS / "hymenoptera")
    parser.add_argument("--base", default="mobilenet_v2")
    parser.add_argument("--weights", default=str(SHARED_WEIGHTS))
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="kept, with its feature cache")


def label(args: argparse.Namespace) -> str:
    return "synthetic" if args.synthetic else args.data.name


def run(args: argparse.Namespace) -> dict:
    work = Path(args.workdir or tempfile.mkdtemp(prefix="doctor-outliers-"))
    if args.synthetic:
        args.data = make_dataset(work / "source", {"train": 20, "val": 5})
        args.weights = "none"
    else:
        need_shared(args.data)
    planted = plant(args.data, work / "data", args.seed)
    features, paths = _features(work, args)
    from tlcli.insight.outliers import find_outliers

    is_planted = np.array([str(p) in planted for p in paths])
    clean = np.flatnonzero(~is_planted)
    flagged_clean = [paths[clean[i]] for i in find_outliers(features[clean]).rows]
    flagged = [paths[i] for i in find_outliers(features).rows]
    found = [p for p in flagged if str(p) in planted]
    results = {
        "images": len(clean),
        "clean": {
            "flagged": len(flagged_clean),
            "files": [_short(p, work) for p in flagged_clean],
        },
        "planted": {
            "planted": len(planted),
            "found": len(found),
            "missed": sorted(Path(p).stem for p in planted if Path(p) not in set(found)),
            "other_flagged": [_short(p, work) for p in flagged if str(p) not in planted],
        },
    }
    print(json.dumps(results, indent=2))
    return results


def render(records: list[dict]) -> str:
    """Images flagged on the clean dataset, and planted non-photos found."""
    lines = [
        "| dataset | images | flagged when clean | planted non-photos found | missed |",
        "|---|---|---|---|---|",
    ]
    for record in records:
        results = record["results"]
        clean, planted = results["clean"], results["planted"]
        files = ", ".join(f"`{name}`" for name in clean["files"]) or "none"
        missed = ", ".join(name.removeprefix("planted-") for name in planted["missed"]) or "-"
        lines.append(
            f"| {record['label']} | {results['images']:,} | {clean['flagged']} ({files}) "
            f"| {planted['found']} of {planted['planted']} | {missed} |"
        )
    return "\n".join(lines)


def plant(source: Path, target: Path, seed: int) -> set[str]:
    """Link every image of `source` into `target`; add one image of each of KINDS."""
    rng = np.random.default_rng(seed)
    for split in (s for s in SPLITS if (source / s).is_dir()):
        for folder in sorted(p for p in (source / split).iterdir() if p.is_dir()):
            for path in list_files(folder):
                link = target / split / folder.name / path.name
                link.parent.mkdir(parents=True, exist_ok=True)
                if not link.is_symlink():
                    link.symlink_to(path.resolve())
    classes = sorted(p.name for p in (source / "train").iterdir() if p.is_dir())
    planted = set()
    for kind in KINDS:
        path = target / "train" / str(rng.choice(classes)) / f"planted-{kind}.png"
        non_photo(kind, rng).save(path)
        planted.add(str(path))
    return planted


def non_photo(kind: str, rng: np.random.Generator, size: int = 256) -> Image.Image:
    """An image of another domain than photographs."""
    if kind == "noise":
        return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    if kind == "block-noise":
        small = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        return Image.fromarray(small).resize((size, size), Image.NEAREST)
    if kind in ("black", "white", "grey"):
        return Image.new("RGB", (size, size), {"black": 0, "white": 255, "grey": 128}[kind])
    image = Image.new("RGB", (size, size if kind != "document" else int(size * 1.3)), "white")
    draw = ImageDraw.Draw(image)
    if kind == "document":
        draw.text((16, 10), "REPORT 2024", fill=(0, 0, 0))
        for line in range(2, 26):
            draw.text((16, 10 + line * 12), " ".join(rng.choice(WORDS, 7)), fill=(20, 20, 20))
    elif kind == "drawing":
        for _ in range(12):
            points = [tuple(int(v) for v in rng.integers(10, size - 10, 2)) for _ in range(4)]
            draw.line(points, fill=(0, 0, 0), width=3)
        for _ in range(3):
            x, y = (int(v) for v in rng.integers(20, size - 80, 2))
            draw.ellipse([x, y, x + 60, y + 60], outline=(0, 0, 0), width=3)
    else:  # a bar chart
        draw.line([(30, 220), (240, 220)], fill=(0, 0, 0), width=2)
        draw.line([(30, 220), (30, 20)], fill=(0, 0, 0), width=2)
        for i in range(6):
            height = int(rng.integers(30, 190))
            draw.rectangle([40 + i * 33, 220 - height, 62 + i * 33, 219], fill=(60, 90, 200))
    return image


def _features(work: Path, args: argparse.Namespace) -> tuple[np.ndarray, list[Path]]:
    from tlcli.config import load_config
    from tlcli.console import Console
    from tlcli.insight.features import target_features
    from tlcli.rundir import RunDir

    data = work / "data"
    folders = {"train_dir": data / "train", "image_size": [args.image_size] * 2}
    for key, name in (("val_dir", "val"), ("val_dir", "validation"), ("test_dir", "test")):
        if (data / name).is_dir():
            folders[key] = data / name
    config = {
        "name": "outliers",
        "output_dir": str(work / "runs"),
        "data": {k: v if isinstance(v, list) else str(v) for k, v in folders.items()},
        "model": {"base": args.base, "weights": args.weights},
    }
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    cfg = load_config(path)
    found = target_features(cfg, RunDir(cfg.run_dir), Console(quiet=True))
    return found.features, list(found.paths)


def _short(path: Path, work: Path) -> str:
    return str(Path(path).relative_to(work / "data"))
