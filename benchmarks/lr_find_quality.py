"""Can lr-find's suggestion be trusted? Final validation accuracy at the suggested rate against
the best of a small grid of rates, on real photographs. One command:

    python benchmarks/lr_find_quality.py --output benchmarks/results/lr_find_quality.json

For each dataset (../shared: hymenoptera, clothing), with MobileNetV2 and its ImageNet weights,
finetune stage (head on the frozen base, Adam, 10 epochs):

1. `tlcli lr-find CONFIG`: the range test and its suggestion (rule `minimum`); the `steepest`
   rule's suggestion is computed from the same curve;
2. `tlcli sweep CONFIG` with the grid sampler over the grid of rates plus both suggestions:
   every rate trains the same head from the same seed, and each trial's final validation
   accuracy is read from results.json.

It prints, per dataset, each rate's accuracy, the best of the grid, and each suggestion's
accuracy and gap to that best.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from tlcli.experiments.lr_find import suggest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
WEIGHTS = SHARED / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
GRID = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
DATASETS = {
    # name: (data keys, image size)
    "hymenoptera": ({"train_dir": "hymenoptera/train", "test_dir": "hymenoptera/val"}, 224),
    "clothing": (
        {
            "train_dir": "clothing/train",
            "val_dir": "clothing/validation",
            "test_dir": "clothing/test",
        },
        160,
    ),
}


def run(command: list[str], log: Path) -> None:
    with log.open("w") as out:
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode
    if code != 0:
        sys.exit(f"{' '.join(command)} failed (exit {code}); see {log}")


def measure(name: str, work: Path, epochs: int) -> dict:
    data, size = DATASETS[name]
    data = {k: str(SHARED / "datasets" / v) for k, v in data.items()}
    config = {
        "name": name,
        "output_dir": str(work / "runs"),
        "cache_dir": str(work / "cache"),  # lr-find and the grid's trials share one cache
        "data": {**data, "image_size": [size, size]},
        "model": {"base": "mobilenet_v2", "weights": str(WEIGHTS)},
        "finetune": {"epochs": epochs},
    }
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    tlcli = [sys.executable, "-m", "tlcli"]
    started = time.perf_counter()
    run([*tlcli, "lr-find", str(path)], work / f"{name}-lr-find.log")
    found = json.loads((work / "runs" / name / "lr_find" / "finetune.json").read_text())
    rates, smoothed = np.asarray(found["rates"]), np.asarray(found["smoothed"])
    steepest, _ = suggest(rates, smoothed, "steepest")
    suggestions = {"minimum": found["suggestion"], "steepest": steepest}
    rates_tried = sorted({*GRID, *suggestions.values()})
    config["name"] = f"{name}-grid"
    config["sweep"] = {
        "sampler": "grid",
        "pruner": "none",
        "trials": len(rates_tried),
        "params": {"finetune.optimizer.learning_rate": rates_tried},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    run([*tlcli, "sweep", str(path)], work / f"{name}-sweep.log")
    results = json.loads((work / "runs" / f"{name}-grid" / "results.json").read_text())
    accuracy = {
        row["finetune.optimizer.learning_rate"]: row["val_accuracy"] for row in results["trials"]
    }
    best_grid = max(GRID, key=lambda rate: accuracy[rate])
    return {
        "image_size": size,
        "epochs": epochs,
        "lr_find_seconds": found["seconds"],
        "suggestions": suggestions,
        "val_accuracy": {f"{rate:g}": accuracy[rate] for rate in rates_tried},
        "best_grid_rate": best_grid,
        "best_grid_accuracy": accuracy[best_grid],
        "suggestion_accuracy": {rule: accuracy[rate] for rule, rate in suggestions.items()},
        "gap_points": {
            rule: round(100 * (accuracy[best_grid] - accuracy[rate]), 1)
            for rule, rate in suggestions.items()
        },
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--output", type=Path)
    parser.add_argument("--workdir", type=Path, help="work here; a cache/ in it is reused")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="lr_find_quality_"))
    shutil.rmtree(work / "runs", ignore_errors=True)  # the runs start anew, the cache stays
    print(f"[lr_find_quality] work folder {work}", file=sys.stderr)
    results = {}
    for name in args.datasets:
        results[name] = found = measure(name, work, args.epochs)
        print(f"{name}: val accuracy by finetune learning rate (Adam, {args.epochs} epochs)")
        for rate, value in found["val_accuracy"].items():
            print(f"  {rate:>8}  {value:.3f}")
        print(
            f"  best of the grid: {found['best_grid_rate']:g} -> {found['best_grid_accuracy']:.3f}"
        )
        for rule, rate in found["suggestions"].items():
            print(
                f"  lr-find ({rule}): {rate:g} -> {found['suggestion_accuracy'][rule]:.3f} "
                f"({found['gap_points'][rule]:+.1f} points below the best)"
            )
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
