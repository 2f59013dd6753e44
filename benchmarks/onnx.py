"""ONNX export, measured: file sizes, the self-check's figures, conversion time, and inference
speed of ONNX Runtime against plain Keras on the same images, for each base.

    python -m benchmarks onnx [--bases vgg16 resnet50 mobilenet_v2]
    python -m benchmarks onnx --synthetic        # VGG16 and ResNet50 only: no ../shared

Each base gets a small run trained with tlcli: VGG16 and ResNet50 on synthetic shapes at 32 px
from random weights (2 frozen epochs); MobileNetV2 with the real ImageNet weights from
../shared on the hymenoptera photos at 160 px (3 frozen epochs; not with --synthetic).
Then `tlcli export --format onnx` with `--quantize none` and `dynamic`, timed (conversion, and
the self-check that loads the file back into ONNX Runtime), and a speed comparison: the same
batch through `keras.Model.predict_on_batch` and through `onnxruntime.InferenceSession.run`,
median of repeats, with the ratio Keras / ONNX Runtime (above 1: ONNX Runtime is faster).
`spread` is how much the run's own probabilities vary over the checked images (the largest
max - min of a class): near 0, the model answers the same for every image and the parity
figures say little.
Needs `pip install -e '.[onnx]'`. Figures from a shared 2-core machine: indications.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from benchmarks.harness import (
    SHARED_DATASETS,
    SHARED_WEIGHTS,
    median_seconds,
    need_shared,
    tlcli_command,
)
from benchmarks.synthetic import SHAPES, make_shapes

HYMENOPTERA = SHARED_DATASETS / "hymenoptera"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bases", nargs="+", default=["vgg16", "resnet50", "mobilenet_v2"])
    parser.add_argument("--batch", type=int, default=32, help="images per timed batch")
    parser.add_argument("--repeats", type=int, default=5, help="timed batches (median)")


def label(args: argparse.Namespace) -> str:
    return "synthetic" if args.synthetic else " ".join(args.bases)


def config_for(base: str, workdir: Path) -> dict | None:
    if base == "mobilenet_v2":
        need_shared(SHARED_WEIGHTS, HYMENOPTERA / "train")
        data = {"train_dir": str(HYMENOPTERA / "train"), "image_size": [160, 160]}
        model = {"base": base, "weights": str(SHARED_WEIGHTS)}
        epochs = 3
    else:
        root = make_shapes(workdir / "shapes", {"train": 10, "val": 6, "test": 4}, SHAPES[:3])
        data = {"train_dir": str(root / "train"), "val_dir": str(root / "val")}
        data |= {"image_size": [32, 32], "batch_size": 8}
        model = {"base": base, "weights": "none", "head": {"dense": [16]}}
        epochs = 2
    return {
        "name": base,
        "seed": 1,
        "output_dir": str(workdir / "runs"),
        "data": data,
        "model": model,
        "finetune": {"epochs": epochs},
    }


def measure(base: str, workdir: Path, batch: int, repeats: int) -> dict:
    from tlcli.errors import RunError
    from tlcli.serve.export import export_stage
    from tlcli.serve.parity import check_images
    from tlcli.serve.predictor import load_keras_model, load_predictor

    config = config_for(base, workdir)
    path = workdir / f"{base}.yaml"
    path.write_text(yaml.safe_dump(config))
    subprocess.run(tlcli_command("run", path, "--quiet"), check=True)
    run = workdir / "runs" / base
    model = load_keras_model(run / "finetune" / "model.keras")
    image_size = tuple(model.input_shape[1:3])
    images = check_images(run, image_size)
    pixels = np.resize(images, (batch, *images.shape[1:])).astype(np.float32)
    keras_seconds = median_seconds(lambda: model.predict_on_batch(pixels), repeats)
    row: dict = {"base": base, "image_size": list(image_size), "batch": batch}
    # How much the model's answers vary over the checked images: near 0, a parity check
    # compares constants and says little.
    reference = model.predict(images.astype(np.float32), verbose=0)
    row["spread"] = float((reference.max(axis=0) - reference.min(axis=0)).max())
    row["keras_ms_per_image"] = 1000 * keras_seconds / batch
    for quantize in ("none", "dynamic"):
        start = time.perf_counter()
        try:
            result = export_stage(run, "onnx", quantize=quantize)
        except RunError as exc:  # the self-check refused the file: report why
            row[quantize] = {"refused": str(exc), "export_seconds": time.perf_counter() - start}
            continue
        seconds = time.perf_counter() - start
        check = result.checks["onnx"]
        predictor = load_predictor(result.artefact)
        onnx_seconds = median_seconds(lambda p=predictor: p.predict(pixels), repeats)
        row[quantize] = {
            "megabytes": result.size_bytes / 1e6,
            "export_seconds": seconds,
            "check_images": check.images,
            "max_diff": check.max_diff,
            "agreement": check.agreement,
            "near_ties": check.near_ties,
            "ms_per_image": 1000 * onnx_seconds / batch,
            "keras_over_onnx": keras_seconds / onnx_seconds,
        }
    row["keras_megabytes"] = (run / "finetune" / "model.keras").stat().st_size / 1e6
    return row


def print_table(rows: list[dict]) -> None:
    header = (
        f"{'base':<13}{'quantize':<9}{'MB':>7}{'export s':>10}{'max |dp|':>10}"
        f"{'top-1':>8}{'spread':>8}{'ms/img':>8}{'Keras ms/img':>14}{'Keras/ORT':>11}"
    )
    print(header)
    for row in rows:
        for quantize in ("none", "dynamic"):
            m = row[quantize]
            if "refused" in m:
                print(f"{row['base']:<13}{quantize:<9}refused: {m['refused']}")
                continue
            print(
                f"{row['base']:<13}{quantize:<9}{m['megabytes']:>7.1f}{m['export_seconds']:>10.1f}"
                f"{m['max_diff']:>10.2g}{m['agreement']:>8.0%}{row['spread']:>8.2f}"
                f"{m['ms_per_image']:>8.2f}"
                f"{row['keras_ms_per_image']:>14.2f}{m['keras_over_onnx']:>10.2f}x"
            )


def run(args: argparse.Namespace) -> dict:
    if args.synthetic:
        args.bases = [base for base in args.bases if base != "mobilenet_v2"]
    with tempfile.TemporaryDirectory() as workdir:
        rows = [measure(base, Path(workdir), args.batch, args.repeats) for base in args.bases]
    print_table(rows)
    return {"bases": rows}


def render(records: list[dict]) -> str:
    """Per base and quantize mode: file, export time, self-check, ONNX Runtime against Keras."""
    lines = [
        "| base | `--quantize` | file | export | max \\|Δp\\| | top-1 agreement | spread "
        "| ONNX Runtime | Keras | Keras / ORT |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for record in records:
        rows = record["results"]
        for row in rows["bases"] if isinstance(rows, dict) else rows:
            name = f"{row['base']}, {row['image_size'][0]} px"
            for quantize in ("none", "dynamic"):
                m = row[quantize]
                if "refused" in m:
                    lines.append(f"| {name} | {quantize} | refused: {m['refused']} |||||||")
                    continue
                lines.append(
                    f"| {name} | {quantize} | {m['megabytes']:.1f} MB "
                    f"| {m['export_seconds']:.1f} s "
                    f"| {m['max_diff']:.2g} | {m['agreement']:.0%} of {m['check_images']} "
                    f"| {row['spread']:.2f} | {m['ms_per_image']:.1f} ms/image "
                    f"| {row['keras_ms_per_image']:.1f} ms | {m['keras_over_onnx']:.2f}x |"
                )
    return "\n".join(lines)
