"""Export quality, measured: every format and quantize mode against the run's Keras model on the
whole test split of real photographs.

    python -m benchmarks export-quality                           # hymenoptera, 128 px
    python -m benchmarks export-quality --datasets hymenoptera clothing shapes
    python -m benchmarks export-quality --datasets shapes --scale-floor 0   # no floor
    python -m benchmarks export-quality --synthetic                # shapes, random weights

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
shapes on dark noise, 4 classes, 64 px, benchmarks/synthetic.py: uniform images on which some of
MobileNetV2's channels almost never fire, as on hand signs or products on a plain background).
`--scale-floor 0` runs the head search without the floor on its standardisation. Needs
`pip install -e '.[onnx]'`, and ../shared unless `--synthetic` (the shapes dataset alone, with
random weights). Times on a shared 2-core machine are indications.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from benchmarks.harness import SHARED_DATASETS, SHARED_WEIGHTS, BenchError, need_shared
from benchmarks.synthetic import SHAPES, make_shapes

DATASETS = SHARED_DATASETS
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--datasets", nargs="+", default=["hymenoptera"])
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--unfreeze-epochs", type=int, default=0, help="0: finetune only")
    parser.add_argument("--scale-floor", type=float, help="override head_search.SCALE_FLOOR")
    parser.add_argument("--workdir", type=Path, help="keep runs here (default: a temp folder)")


def label(args: argparse.Namespace) -> str:
    if args.synthetic:
        return "synthetic"
    stage = f", {args.unfreeze_epochs} unfrozen epochs" if args.unfreeze_epochs else ""
    floor = "" if args.scale_floor is None else f", scale floor {args.scale_floor:g}"
    return f"{' '.join(args.datasets)}, {args.image_size} px{stage}{floor}"


def weights(args: argparse.Namespace) -> str:
    return "none" if args.synthetic else str(SHARED_WEIGHTS)


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
        root = make_shapes(
            workdir / "shapes", {"train": 40, "val": 10, "test": 25}, classes=SHAPES, size=64
        )
        return {
            "train_dir": str(root / "train"),
            "val_dir": str(root / "val"),
            "test_dir": str(root / "test"),
            "image_size": [64, 64],
        }
    raise BenchError(f"unknown dataset {dataset}: hymenoptera, clothing or shapes")


def train(dataset: str, workdir: Path, args: argparse.Namespace) -> Path:
    from tlcli.config import load_config
    from tlcli.console import Console
    from tlcli.train.stages import run_all

    config = {
        "name": dataset,
        "output_dir": str(workdir / "runs"),
        "data": data_section(dataset, workdir, args.image_size),
        "model": {"base": "mobilenet_v2", "weights": weights(args)},
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


def render(records: list[dict]) -> str:
    """Per export, its size and, per dataset, top-1 agreement with the Keras model and test
    accuracy (the Keras model's in the header); a table per record."""
    tables = []
    for record in records:
        entries = record["results"]["datasets"]
        header = ["export", "size"]
        for entry in entries:
            name, keras_accuracy = entry["dataset"], entry["keras_accuracy"]
            header += [f"{name}: agreement", f"accuracy (Keras {keras_accuracy:.3f})"]
        lines = [f"**{record['label']}**", "", "| " + " | ".join(header) + " |"]
        lines.append("|" + "---|" * len(header))
        for index, (export_format, quantize) in enumerate(EXPORTS):
            rows = [entry["exports"][index] for entry in entries]
            cells = [f"{export_format} `{quantize}`", f"{rows[0]['megabytes']} MB"]
            for row in rows:
                refused = "" if row["check_passed"] else ", refused"
                cells += [f"{row['agreement']:.1%}{refused}", f"{row['accuracy']:.3f}"]
            lines.append("| " + " | ".join(cells) + " |")
        tables.append("\n".join(lines))
    return "\n\n".join(tables)


def run(args: argparse.Namespace) -> dict:
    if args.synthetic:
        args.datasets = ["shapes"]
    else:
        need_shared(SHARED_WEIGHTS)
    if args.scale_floor is not None:
        import tlcli.train.head_search as head_search

        head_search.SCALE_FLOOR = args.scale_floor
    from tlcli.train import head_search

    results = {"scale_floor": head_search.SCALE_FLOOR, "datasets": []}
    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        for dataset in args.datasets:
            results["datasets"].append(measure(dataset, workdir, args))
    print(table(results))
    return results
