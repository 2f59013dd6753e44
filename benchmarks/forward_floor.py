"""The floor of a frozen-base stage: one forward pass of the base over train + val.

A frozen stage cannot cost less than running the frozen base once over every image it trains
and validates on; plain Keras pays that once per epoch, a feature cache once per run. This
builds the same feature extractor as plain_keras.py (preprocessing -> base -> pooling), decodes
train/ and val/ into memory, and times:

- import_seconds: importing TensorFlow and Keras (in this process);
- decode_seconds: reading and resizing the images (keras.utils.image_dataset_from_directory);
- build_seconds: building the base and loading its weights;
- warmup_seconds: predict() on one batch and one image (graph tracing for a full and a partial
  batch, and first-call set-up);
- forward_seconds: predict() over all train + val images, after the warm-up: the floor.

    python -m benchmarks.forward_floor --data sample_data/target --base vgg16 --weights none \\
        --image-size 64 --output floor.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with train/ and val/")
    parser.add_argument("--base", default="vgg16")
    parser.add_argument("--weights", default="none")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--output", type=Path, required=True, help="JSON result file")
    return parser.parse_args(argv)


def timed(function, *args):
    """(function(*args), seconds it took)."""
    started = time.perf_counter()
    value = function(*args)
    return value, time.perf_counter() - started


def import_plain_keras():
    """plain_keras imports TensorFlow and Keras: timing this import times theirs."""
    from benchmarks import plain_keras

    return plain_keras


def decode_images(plain_keras, args: argparse.Namespace):
    """Every train and val image, decoded and resized, as one float32 array."""
    import numpy as np

    batches = []
    for name in ("train", "val"):
        if (args.data / name).is_dir():
            dataset = plain_keras.load_split(args.data / name, args.image_size, args.batch_size)
            batches += [images.numpy() for images, _ in dataset]
    return np.concatenate(batches)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    plain_keras, import_seconds = timed(import_plain_keras)
    images, decode_seconds = timed(decode_images, plain_keras, args)
    model, build_seconds = timed(
        plain_keras.feature_extractor, args.base, args.image_size, args.weights
    )
    batch = args.batch_size
    warmup = images[: batch + 1]  # a full batch and a partial one: both traces happen here
    _, warmup_seconds = timed(lambda: model.predict(warmup, batch_size=batch, verbose=0))
    _, forward_seconds = timed(lambda: model.predict(images, batch_size=batch, verbose=0))
    result = {
        "images": len(images),
        "import_seconds": import_seconds,
        "decode_seconds": decode_seconds,
        "build_seconds": build_seconds,
        "warmup_seconds": warmup_seconds,
        "forward_seconds": forward_seconds,
        "images_per_second": len(images) / forward_seconds,
    }
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
