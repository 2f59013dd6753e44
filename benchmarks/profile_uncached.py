"""Where an uncached stage loses time against plain Keras: the same model, fed three ways.

An uncached stage (unfreeze with `layers: all`, or augmentation without cached views) runs the
whole network every step, like plain Keras; what differs is around it. This trains one model
(plain_keras.py's, every base layer but BatchNorm trainable, Adam) on the same decoded images,
in one process, and times the epochs after the first (the first traces the graph):

- keras:  a `tf.data` pipeline over float32 images in memory, as the Keras guide caches them;
          with --augment, RandomFlip + RandomZoom inside the model, as plain_keras.py;
- tlcli pipeline:  `tlcli.data.pipeline.EpochBatches` over the uint8 image cache (batches
          gathered in threads, augmented in the pipeline), plain `fit()`, no callbacks;
- tlcli fit_stage:  the same batches through `tlcli.train.fitting.fit_stage`, with every
          callback of a stage (epoch backup, CSV history, TensorBoard).

    python -m benchmarks profile-uncached --data ../shared/datasets/hymenoptera/train \\
        --image-size 160 --images 256 --epochs 4 [--augment]
    python -m benchmarks profile-uncached --synthetic --image-size 96 --images 128
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from benchmarks.harness import SHARED_DATASETS, need_shared
from benchmarks.synthetic import make_photos
from tlcli.bases import BASES

WAYS = ("keras", "tlcli pipeline", "tlcli fit_stage")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        type=Path,
        default=SHARED_DATASETS / "hymenoptera" / "train",
        help="a folder of class folders (default: hymenoptera's train/ in ../shared)",
    )
    parser.add_argument("--base", default="mobilenet_v2", choices=sorted(BASES))
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--images", type=int, default=256, help="training images (repeated)")
    parser.add_argument("--epochs", type=int, default=4, help="the first is not timed")
    parser.add_argument("--augment", action="store_true", help="horizontal flip + zoom 0.1")


def label(args: argparse.Namespace) -> str:
    data = "synthetic" if args.synthetic else args.data.parent.name or args.data.name
    augment = ", flip + zoom" if args.augment else ""
    return f"{data}, {args.base}, {args.image_size} px{augment}"


def run(args: argparse.Namespace) -> dict:
    from benchmarks.uncached_epochs import profile

    if args.synthetic:
        args.data = Path(tempfile.mkdtemp(prefix="profile_uncached_")) / "images"
        make_photos(args.data, min(args.images, 256))
    need_shared(args.data)
    return profile(args)


def render(records: list[dict]) -> str:
    """Median epoch after the first, seconds, of each way of feeding the same model."""
    lines = [
        "| setting | plain Keras | tlcli's pipeline, bare fit() | tlcli's fit_stage "
        "| backup per epoch |",
        "|---|---|---|---|---|",
    ]
    for record in records:
        results = record["results"]
        epochs = record["settings"].get("epochs") or len(results["keras"])
        medians = [f"{_median(results[way]):.2f} s" for way in WAYS]
        backup = f"{results['backup_seconds'] / epochs:.2f} s"
        lines.append(f"| {record['label']} | {' | '.join(medians)} | {backup} |")
    return "\n".join(lines)


def _median(seconds: list[float]) -> float:
    return statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]
