"""Images per second tlcli's input pipeline delivers with no model: is the pipeline the limit?

A GPU trains MobileNetV2 at 224 px on thousands of images per second; if the pipeline feeding
it (tlcli.data.pipeline: batches gathered from the decoded-image cache, converted to float,
optionally augmented, prefetched) delivers fewer, the GPU waits. This decodes a folder of
varied JPEGs (benchmarks/synthetic.py's photos-like images, so every run is synthetic) into
tlcli's image cache, then iterates
the training batches of several epochs with nothing consuming them, and prints images/s after
the first epoch, without augmentation and with each augmentation setting given.

    python -m benchmarks pipeline --images 4000 --image-size 224
    python -m benchmarks pipeline --images 500 --image-size 96    # a quick run
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from benchmarks.synthetic import make_photos

SETTINGS = {
    "none": None,
    "flip": {"flip": "horizontal"},
    "flip + zoom 0.1": {"flip": "horizontal", "zoom": 0.1},
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3, help="the first is not timed")


def label(args: argparse.Namespace) -> str:
    return f"{args.images:,} images, {args.image_size} px, batch {args.batch_size}"


def images_per_second(split, args, augment: dict | None) -> float:
    from tlcli.config import AugmentConfig
    from tlcli.data.pipeline import EpochBatches

    augment = AugmentConfig(**augment) if augment else None
    batches = EpochBatches(split, 4, args.batch_size, seed=0, augment=augment)
    iterator = iter(batches.dataset(0, args.epochs))
    for _ in range(batches.steps):  # the first epoch: tracing, warm page cache
        next(iterator)
    started = time.perf_counter()
    for _ in iterator:
        pass
    return (args.epochs - 1) * len(split) / (time.perf_counter() - started)


def run(args: argparse.Namespace) -> dict:
    from tlcli.data.folders import scan_folder
    from tlcli.data.image_cache import decode_folder
    from tlcli.data.stage_data import DecodedSplit

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        make_photos(folder, args.images)
        scanned = scan_folder(folder)
        size = (args.image_size, args.image_size)
        started = time.perf_counter()
        decoded = decode_folder(scanned, size, Path(tmp) / "cache")
        decode_rate = args.images / (time.perf_counter() - started)
        rows = [int(i) for i in range(args.images) if decoded.ok[i]]
        split = DecodedSplit(
            "train", "train_dir", decoded.pixels, rows, scanned.labels[rows], [], key="bench"
        )
        results = {name: images_per_second(split, args, aug) for name, aug in SETTINGS.items()}
    print(
        f"tlcli input pipeline, no model: {args.images} images at {args.image_size} px, "
        f"batch {args.batch_size}, {os.cpu_count()} CPU cores"
    )
    print(f"  decoding the JPEGs into the cache (once): {decode_rate:,.0f} images/s")
    for name, rate in results.items():
        print(f"  training batches, augmentation {name:<16} {rate:>8,.0f} images/s")
    return {"decode": decode_rate, **results}


def render(records: list[dict]) -> str:
    """Images per second from the decoded cache, by augmentation, and the decoding itself."""
    lines = ["| setting | " + " | ".join(f"augmentation: {name}" for name in SETTINGS)
             + " | decoding JPEGs into the cache (once) |",
             "|---|" + "---|" * (len(SETTINGS) + 1)]  # fmt: skip
    for record in records:
        results = record["results"]
        rates = [f"{results[name]:,.0f}" for name in SETTINGS]
        lines.append(f"| {record['label']} | {' | '.join(rates)} | {results['decode']:,.0f} |")
    return "\n".join(lines) + "\n\n(images per second)"
