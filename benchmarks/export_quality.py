"""Export quality, measured: every format and quantize mode against the run's Keras model on the
whole test split of real photographs.

    python benchmarks/export_quality.py                         # hymenoptera, 128 px
    python benchmarks/export_quality.py --datasets hymenoptera clothing --image-size 160
    python benchmarks/export_quality.py --datasets shapes --scale-floor 0   # the head search
                                                                # without its floor (before)

Each dataset gets one tlcli run with MobileNetV2 and the real ImageNet weights of ../shared, a
config that names only the data, the base, the weights and the image size (the default recipe:
the finetune head fitted by the search, flip TTA when it chose mirrored images), finetune only
unless --unfreeze-epochs. Then `export_stage` writes every format and quantize mode with
`force=True` (so an export its own check refuses is measured too), loads each artefact back
from disk and predicts the test split. For each: top-1 agreement with the Keras model, the
artefact's test accuracy against the Keras model's, the export's own check (64 images) and the
size. `kernel rows` is the largest row of the head's kernel over the median row (the
quantized formats give each class one scale for its weights).

Datasets: hymenoptera (2 classes; its val/ folder is the test split, validation is 20% of
train/), clothing (10 classes, train/validation/test as given), shapes (synthetic bright
shapes on dark noise, 4 classes, 64 px, tests/conftest.py: uniform images on which some of
MobileNetV2's channels almost never fire, as on hand signs or products on a plain background).
`--scale-floor 0` runs the head search without the floor on its standardisation (the code
before issue 22). Writes benchmarks/results/export_quality.json (--output). Needs ../shared and
`pip install -e '.[onnx]'`. Times on a shared 2-core machine are indications.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
WEIGHTS = SHARED / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
DATASETS = SHARED / "datasets"
EXPORTS = [
    ("keras", "none"),
    ("savedmodel", "none"),
    ("tflite", "none"),
    ("tflite", "float16"),
    ("tflite", "dynamic"),
    ("tflite", "int8"),
    ("onnx", "none"),
    ("onnx", "dynamic"),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["hymenoptera"])
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--unfreeze-epochs", type=int, default=0, help="0: finetune only")
    parser.add_argument("--scale-floor", type=float, help="override head_search.SCALE_FLOOR")
    parser.add_argument(
        "--output", type=Path, default=REPO / "benchmarks/results/export_quality.json"
    )
    parser.add_argument("--workdir", type=Path, help="keep runs here (default: a temp folder)")
    parser.add_argument("--table", type=Path, help="only print the table of a results JSON")
    return parser.parse_args(argv)


def data_section(dataset: str, workdir: Path, image_size: int) -> dict:
    size = [image_size, image_size]
    if dataset == "hymenoptera":
        root = DATASETS / "hymenoptera"
        return {"train_dir": str(root / "train"), "test_dir": str(root / "val"), "image_size": size}
    if dataset == "clothing":
        root = DATASETS / "clothing"
        return {
            "train_dir": str(root / "train"),
            "val_dir": str(root / "validation"),
            "test_dir": str(root / "test"),
            "image_size": size,
        }
    if dataset == "shapes":
        sys.path.insert(0, str(REPO / "tests"))
        from conftest import SHAPES, make_image_folder

        root = make_image_folder(
            workdir / "shapes", {"train": 40, "val": 10, "test": 25}, classes=SHAPES, size=64
        )
        return {
            "train_dir": str(root / "train"),
            "val_dir": str(root / "val"),
            "test_dir": str(root / "test"),
            "image_size": [64, 64],
        }
    raise SystemExit(f"unknown dataset {dataset}: hymenoptera, clothing or shapes")


def train(dataset: str, workdir: Path, args: argparse.Namespace) -> Path:
    from tlcli.config import load_config
    from tlcli.console import Console
    from tlcli.train.stages import run_all

    config = {
        "name": dataset,
        "output_dir": str(workdir / "runs"),
        "data": data_section(dataset, workdir, args.image_size),
        "model": {"base": "mobilenet_v2", "weights": str(WEIGHTS)},
        "evaluate": {"split": "test"},
    }
    if args.unfreeze_epochs:
        config["unfreeze"] = {"epochs": args.unfreeze_epochs}
    path = workdir / f"{dataset}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    run_all(load_config(path), console=Console(quiet=True))
    return workdir / "runs" / dataset


def test_images(run: Path, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    from tlcli.data.images import decode_many

    classes = (run / "labels.txt").read_text().splitlines()
    with (run / "split.csv").open(newline="") as rows:
        test = [row for row in csv.DictReader(rows) if row["split"] == "test"]
    decoded = list(decode_many([Path(row["path"]) for row in test], size))
    kept = [
        (d.pixels, classes.index(row["label"]))
        for d, row in zip(decoded, test, strict=True)
        if d.pixels is not None
    ]
    return np.stack([p for p, _ in kept]), np.array([label for _, label in kept])


def predict(predictor, pixels: np.ndarray, batch: int = 32) -> np.ndarray:
    return np.concatenate(
        [predictor.predict(pixels[i : i + batch]) for i in range(0, len(pixels), batch)]
    )


def kernel_rows(run: Path, stage: str) -> float:
    import keras

    from tlcli.model.output_layer import output_layer

    model = keras.models.load_model(run / stage / "model.keras", compile=False)
    rows = np.abs(output_layer(model).get_weights()[0]).max(axis=1)
    return float(rows.max() / np.median(rows))


def measure(dataset: str, workdir: Path, args: argparse.Namespace) -> dict:
    from tlcli.console import Console
    from tlcli.rundir import RunDir
    from tlcli.serve.export import export_stage
    from tlcli.serve.predictor import load_predictor

    started = time.perf_counter()
    run = train(dataset, workdir, args)
    stage = RunDir(run).trained_stage(None)
    keras_model = load_predictor(run, stage)
    pixels, labels = test_images(run, keras_model.image_size)
    reference = predict(keras_model, pixels)
    keras_accuracy = float((reference.argmax(1) == labels).mean())
    search = json.loads((run / "finetune" / "search.json").read_text())
    result = {
        "dataset": dataset,
        "image_size": list(keras_model.image_size),
        "stage": stage,
        "test_images": len(labels),
        "keras_accuracy": round(keras_accuracy, 4),
        "search": search["chosen"] | {"kept": search["kept"]},
        "kernel_rows": round(kernel_rows(run, "finetune"), 1),
        "train_seconds": round(time.perf_counter() - started),
        "exports": [],
    }
    print(f"{dataset}: {stage}, keras test accuracy {keras_accuracy:.4f}", flush=True)
    for export_format, quantize in EXPORTS:
        started = time.perf_counter()
        folder = workdir / "exports" / dataset / f"{export_format}-{quantize}"
        exported = export_stage(
            run, export_format, stage=stage, quantize=quantize, output=folder, force=True,
            console=Console(quiet=True),
        )  # fmt: skip
        seconds = time.perf_counter() - started
        probabilities = predict(load_predictor(folder), pixels)
        check = next(iter(exported.checks.values()))
        row = {
            "format": export_format,
            "quantize": quantize,
            "agreement": round(float((probabilities.argmax(1) == reference.argmax(1)).mean()), 4),
            "accuracy": round(float((probabilities.argmax(1) == labels).mean()), 4),
            "max_dp": round(float(np.abs(probabilities - reference).max()), 4),
            "check_passed": exported.passed,
            "check": check.describe(),
            "megabytes": round(exported.size_bytes / 1e6, 1),
            "export_seconds": round(seconds, 1),
        }
        result["exports"].append(row)
        print(
            f"  {export_format:10} {quantize:8} agreement {row['agreement']:.3f} accuracy "
            f"{row['accuracy']:.4f} max|dp| {row['max_dp']:.3f} check "
            f"{'passed' if row['check_passed'] else 'REFUSED'}",
            flush=True,
        )
    return result


def table(results: dict) -> str:
    lines = [
        "| dataset | format | quantize | agreement | accuracy | Keras | max \\|Δp\\| | check "
        "| size |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in results["datasets"]:
        name = f"{entry['dataset']}, {entry['image_size'][0]} px"
        for row in entry["exports"]:
            lines.append(
                f"| {name} | {row['format']} | {row['quantize']} | {row['agreement']:.1%} | "
                f"{row['accuracy']:.3f} | {entry['keras_accuracy']:.3f} | {row['max_dp']:.3f} | "
                f"{'passed' if row['check_passed'] else 'refused'} | {row['megabytes']} MB |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.table:
        print(table(json.loads(args.table.read_text())))
        return
    if not WEIGHTS.is_file():
        raise SystemExit(f"{WEIGHTS} not found: this benchmark needs ../shared")
    if args.scale_floor is not None:
        import tlcli.train.head_search as head_search

        head_search.SCALE_FLOOR = args.scale_floor
    from tlcli import __version__
    from tlcli.train import head_search

    results = {
        "tlcli": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(["python", "benchmarks/export_quality.py", *(argv or sys.argv[1:])]),
        "scale_floor": head_search.SCALE_FLOOR,
        "datasets": [],
    }
    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        for dataset in args.datasets:
            results["datasets"].append(measure(dataset, workdir, args))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
