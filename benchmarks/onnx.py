"""ONNX export, measured: file sizes, the self-check's figures, conversion time, and inference
speed of ONNX Runtime against plain Keras on the same images, for each base.

    python benchmarks/onnx_export.py [--bases vgg16 resnet50 mobilenet_v2] [--output FILE]

Each base gets a small run trained with tlcli: VGG16 and ResNet50 on synthetic shapes at 32 px
from random weights (2 frozen epochs); MobileNetV2 with the real ImageNet weights from
../shared on the hymenoptera photos at 160 px (3 frozen epochs; skipped without ../shared).
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
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
WEIGHTS = SHARED / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
HYMENOPTERA = SHARED / "datasets" / "hymenoptera"
sys.path.insert(0, str(REPO / "tests"))  # conftest.make_image_folder: the synthetic shapes


def config_for(base: str, workdir: Path) -> dict | None:
    if base == "mobilenet_v2":
        if not WEIGHTS.is_file() or not (HYMENOPTERA / "train").is_dir():
            return None
        data = {"train_dir": str(HYMENOPTERA / "train"), "image_size": [160, 160]}
        model = {"base": base, "weights": str(WEIGHTS)}
        epochs = 3
    else:
        from conftest import make_image_folder

        root = make_image_folder(workdir / "shapes", {"train": 10, "val": 6, "test": 4})
        data = {"train_dir": str(root / "train"), "val_dir": str(root / "val")}
        data |= {"image_size": [32, 32], "batch_size": 8}
        model = {"base": base, "weights": "none", "head": {"dense": [16]}}
        epochs = 2
    return {
        "name": base,
        "seed": 1,  # as tests/conftest.py's runs
        "output_dir": str(workdir / "runs"),
        "data": data,
        "model": model,
        "finetune": {"epochs": epochs},
    }


def median_seconds(function, repeats: int) -> float:
    function()  # warm-up: graph tracing, session initialisation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(base: str, workdir: Path, batch: int, repeats: int) -> dict | None:
    from tlcli.errors import RunError
    from tlcli.serve.export import export_stage
    from tlcli.serve.parity import check_images
    from tlcli.serve.predictor import load_keras_model, load_predictor

    config = config_for(base, workdir)
    if config is None:
        return None
    path = workdir / f"{base}.yaml"
    path.write_text(yaml.safe_dump(config))
    subprocess.run([sys.executable, "-m", "tlcli", "run", str(path), "--quiet"], check=True)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bases", nargs="+", default=["vgg16", "resnet50", "mobilenet_v2"])
    parser.add_argument("--batch", type=int, default=32, help="images per timed batch")
    parser.add_argument("--repeats", type=int, default=5, help="timed batches (median)")
    parser.add_argument("--output", type=Path, help="write the measurements as JSON")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for base in args.bases:
            row = measure(base, Path(workdir), args.batch, args.repeats)
            if row is None:
                print(f"{base}: skipped (../shared weights or photos not present)")
                continue
            rows.append(row)
    print_table(rows)
    if args.output:
        args.output.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
