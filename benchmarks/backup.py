"""What tlcli's per-epoch backup costs, against plain Keras saving the same weights.

Every epoch, a tlcli stage saves a backup it can resume from exactly (`EpochBackup` in
tlcli/train/fitting.py): the weights, optimizer state and random generator states, one flat
dataset per dtype (tlcli/train/training_state.py), into a temporary file renamed into place. This
times that save, and loading it back (`load_backup`), against plain `model.save_weights` /
`load_weights` of the same model to the same disk, in one process:

    python -m benchmarks backup --base mobilenet_v2 --image-size 224 --trainable all
    python -m benchmarks backup --base vgg16 --image-size 224 --trainable head

`--trainable all` is an uncached `unfreeze` with every layer training (Adam keeps two slots per
weight: the largest backup); `head` is an uncached `finetune` (frozen base). Random weights: the
cost depends on sizes, not values; no data is read, so every run is synthetic.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.harness import median_seconds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", default="mobilenet_v2")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--trainable", choices=["head", "all"], default="all")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=None, help="where to write (default: tmp)")


def label(args: argparse.Namespace) -> str:
    return f"{args.base}, {args.image_size} px, trainable {args.trainable}"


def build(base_name: str, size: int, trainable: str):
    import keras

    from tlcli.bases import build_base
    from tlcli.config import FinetuneConfig, HeadConfig
    from tlcli.model.network import build_classifier, find_base
    from tlcli.model.optimizers import compile_for_stage

    keras.utils.set_random_seed(0)
    base = build_base(base_name, (size, size), None)
    model = build_classifier(base, 10, HeadConfig(), "avg", base_name, base_training=False)
    find_base(model).trainable = trainable == "all"
    compile_for_stage(model, FinetuneConfig(), steps_per_epoch=1, jit_compile="auto")
    pixels = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    model.fit(pixels, np.eye(10, dtype=np.float32)[[0, 1]], epochs=1, verbose=0)  # builds all
    return model


def run(args: argparse.Namespace) -> dict:
    from tlcli.runtime.startup import import_tensorflow

    import_tensorflow()
    from tlcli.train.fitting import EpochBackup, backup_path, load_backup

    model = build(args.base, args.image_size, args.trainable)
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.workdir) as work:
        folder = Path(work)
        plain_file = folder / "plain.weights.h5"
        backup = EpochBackup(folder / "backup")
        backup.set_model(model)
        epoch = iter(range(10**6))
        results = {
            "save": (
                median_seconds(lambda: model.save_weights(plain_file), args.repeats),
                median_seconds(lambda: backup.on_epoch_end(next(epoch)), args.repeats),
            ),
        }
        tlcli_file = next((folder / "backup").glob("epoch-*.weights.h5"))
        results["load"] = (
            median_seconds(lambda: model.load_weights(plain_file), args.repeats),
            median_seconds(lambda: load_backup(model, tlcli_file), args.repeats),
        )
        sizes = plain_file.stat().st_size, tlcli_file.stat().st_size
        assert tlcli_file == backup_path(folder / "backup", next(epoch))  # one kept
    print(
        f"per-epoch backup: {args.base} at {args.image_size} px, trainable {args.trainable}, "
        f"{model.count_params():,} weights, median of {args.repeats}"
    )
    print(f"{'':28}{'plain Keras':>12}{'tlcli':>10}{'tlcli/plain':>13}")
    print(f"{'file size (MB)':28}{sizes[0] / 1e6:12.1f}{sizes[1] / 1e6:10.1f}"
          f"{sizes[1] / sizes[0]:12.2f}x")  # fmt: skip
    for what, (plain, ours) in results.items():
        print(f"{what + ' (s)':28}{plain:12.3f}{ours:10.3f}{ours / plain:12.2f}x")
    return {**results, "megabytes": [size / 1e6 for size in sizes]}


def render(records: list[dict]) -> str:
    """Save and load seconds of plain Keras' save_weights and of tlcli's backup, and file size."""
    lines = [
        "| model | file | plain Keras save / load | tlcli save / load |",
        "|---|---|---|---|",
    ]
    for record in records:
        results = record["results"]
        (plain_save, save), (plain_load, load) = results["save"], results["load"]
        size = f"{results['megabytes'][1]:.1f} MB" if "megabytes" in results else "-"
        lines.append(
            f"| {record['label']} | {size} | {plain_save:.3f} / {plain_load:.3f} s "
            f"| {save:.3f} / {load:.3f} s ({save / plain_save:.2f}x / {load / plain_load:.2f}x) |"
        )
    return "\n".join(lines)
