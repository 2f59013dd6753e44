"""Images per second tlcli's input pipeline delivers with no model: is the pipeline the limit?

A GPU trains MobileNetV2 at 224 px on thousands of images per second; if the pipeline feeding
it (tlcli.data.pipeline: batches gathered from the decoded-image cache, converted to float,
optionally augmented, prefetched) delivers fewer, the GPU waits. This decodes a folder of
varied JPEGs (made as benchmarks/scale.py makes them) into tlcli's image cache, then iterates
the training batches of several epochs with nothing consuming them, and prints images/s after
the first epoch, without augmentation and with each augmentation setting given.

    python benchmarks/pipeline_throughput.py --images 4000 --image-size 224
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import make_images

from tlcli.config import AugmentConfig
from tlcli.data.folders import scan_folder
from tlcli.data.image_cache import decode_folder
from tlcli.data.pipeline import EpochBatches
from tlcli.data.stage_data import DecodedSplit

SETTINGS = {
    "none": None,
    "flip": AugmentConfig(flip="horizontal"),
    "flip + zoom 0.1": AugmentConfig(flip="horizontal", zoom=0.1),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3, help="the first is not timed")
    parser.add_argument("--output", type=Path, help="results as JSON")
    return parser.parse_args(argv)


def images_per_second(split: DecodedSplit, args, augment: AugmentConfig | None) -> float:
    batches = EpochBatches(split, 4, args.batch_size, seed=0, augment=augment)
    iterator = iter(batches.dataset(0, args.epochs))
    for _ in range(batches.steps):  # the first epoch: tracing, warm page cache
        next(iterator)
    started = time.perf_counter()
    for _ in iterator:
        pass
    return (args.epochs - 1) * len(split) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        make_images(folder, args.images)
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
    if args.output:
        args.output.write_text(
            json.dumps({"settings": vars(args), "decode": decode_rate, **results}, default=str)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
