"""Can lr-find's suggestion be trusted? Validation accuracy after training at the suggested rate
against the best of a small grid of rates, on real photographs, for the finetune head and for
unfreeze. One command:

    python -m benchmarks lr-find                                   # both datasets of ../shared
    python -m benchmarks lr-find --synthetic --stages finetune --image-size 64 --head-seeds 1

For each dataset (../shared: hymenoptera, clothing), MobileNetV2 with its ImageNet weights at
160 px, `finetune.search: off` (with the head search on, the finetune rate trains only the
search's baseline) and `unfreeze.interpolate: off` (the finetune/unfreeze weight mix would hide
a rate that wrecks the model):

1. finetune: `tlcli lr-find CONFIG`; the suggestion of every rule is computed from the same
   curve; then `tlcli sweep` with the grid sampler over HEAD_GRID plus the suggestions, each
   trial training the head alone (Adam, `--head-epochs`, same seed);
2. unfreeze: `tlcli finetune CONFIG` (the default rate), `tlcli lr-find CONFIG --stage
   unfreeze`, then a grid sweep over UNFREEZE_GRID plus the suggestions, each trial training
   finetune and then unfreeze (`--unfreeze-epochs`).

`--synthetic` runs on photos-like images the suite makes, with random weights (it exercises the
measurement; the rates it finds say nothing about real photos).

Each trial's score is its last epoch's validation accuracy (results.json of the sweep); a rate's
accuracy is the mean over the seeds it trained with (`--head-seeds`, `--unfreeze-seeds`: from
one seed to the next the same rate moves by a point or two). It prints, per dataset and stage,
each rate's accuracy, the best of the grid, and each suggestion's accuracy and gap to that best.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.harness import (
    SHARED_DATASETS,
    SHARED_WEIGHTS,
    need_shared,
    run_child,
    tlcli_command,
)
from benchmarks.synthetic import make_dataset
from tlcli.experiments.lr_suggest import suggest

RULES = ("descent", "minimum")
HEAD_GRID = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
UNFREEZE_GRID = [1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4]
DATASETS = {
    # hymenoptera has no test split: its val folder (153 images) validates, 44 carved from
    # train would score in steps of 2.3 points
    "hymenoptera": {"train_dir": "hymenoptera/train", "val_dir": "hymenoptera/val"},
    "clothing": {
        "train_dir": "clothing/train",
        "val_dir": "clothing/validation",
        "test_dir": "clothing/test",
    },
    "synthetic": {"train_dir": "synthetic/train", "val_dir": "synthetic/val"},
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--datasets", nargs="+", default=["hymenoptera", "clothing"], choices=list(DATASETS)
    )
    parser.add_argument("--stages", nargs="+", default=["finetune", "unfreeze"])
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--head-epochs", type=int, default=10)
    parser.add_argument("--unfreeze-epochs", type=int, default=2)
    parser.add_argument("--head-grid", type=float, nargs="+", default=HEAD_GRID)
    parser.add_argument("--unfreeze-grid", type=float, nargs="+", default=UNFREEZE_GRID)
    parser.add_argument("--head-seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--unfreeze-seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--workdir", type=Path, help="work here; a cache/ in it is reused")


def label(args: argparse.Namespace) -> str:
    return "synthetic" if args.synthetic else f"MobileNetV2 ImageNet, {args.image_size} px"


def run_tlcli(command: list[str], log: Path) -> None:
    run_child(log.stem, command, log.parent)


def base_config(name: str, work: Path, args) -> dict:
    weights = "none" if name == "synthetic" else str(SHARED_WEIGHTS)
    root = work / "data" if name == "synthetic" else SHARED_DATASETS
    data = {k: str(root / v) for k, v in DATASETS[name].items()}
    return {
        "name": name,
        "output_dir": str(work / "runs"),
        "cache_dir": str(work / "cache"),  # lr-find and every trial share one cache
        "data": {**data, "image_size": [args.image_size, args.image_size]},
        "model": {"base": "mobilenet_v2", "weights": weights},
        "finetune": {"epochs": args.head_epochs, "search": "off"},
        "unfreeze": {"epochs": args.unfreeze_epochs, "interpolate": "off"},
    }


def grid_accuracy(
    config: dict, key: str, rates: list[float], seeds: list[int], work: Path, tag: str
) -> dict:
    """Validation accuracy of a grid sweep over `key` and the seeds: {rate: [per seed]}."""
    swept = {
        **config,
        "name": tag,
        "sweep": {
            "sampler": "grid",
            "pruner": "none",
            "trials": len(rates) * len(seeds),
            "params": {key: rates, "seed": seeds},
        },
    }
    path = work / f"{tag}.yaml"
    path.write_text(yaml.safe_dump(swept, sort_keys=False))
    run_tlcli(tlcli_command("sweep", path, "--quiet"), work / f"{tag}.log")
    results = json.loads((work / "runs" / f"{tag}-sweep" / "results.json").read_text())
    found: dict = {}
    for row in sorted(results["trials"], key=lambda row: row["seed"]):
        found.setdefault(row[key], []).append(row["val_accuracy"])
    return found


def measure(config: dict, stage: str, grid: list[float], seeds: list[int], work: Path) -> dict:
    name = config["name"]
    if stage == "finetune":  # the head alone
        config = {key: value for key, value in config.items() if key != "unfreeze"}
    path = work / f"{name}-{stage}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    started = time.perf_counter()
    if stage == "unfreeze":
        run_tlcli(tlcli_command("finetune", path, "--quiet"), work / f"{name}-finetune.log")
    run_tlcli(
        tlcli_command("lr-find", path, "--stage", stage), work / f"{name}-{stage}-lr-find.log"
    )
    found = json.loads((work / "runs" / name / "lr_find" / f"{stage}.json").read_text())
    suggestions = {rule: suggest(found["rates"], found["losses"], rule).rate for rule in RULES}
    rates = sorted({*grid, *suggestions.values()})
    key = f"{stage}.optimizer.learning_rate"
    per_seed = grid_accuracy(config, key, rates, seeds, work, f"{name}-{stage}-grid")
    accuracy = {rate: round(statistics.mean(values), 4) for rate, values in per_seed.items()}
    best = max(grid, key=lambda rate: accuracy[rate])
    return {
        "lr_find_seconds": found["seconds"],
        "lr_find_steps": len(found["rates"]),
        "suggestions": suggestions,
        "why": {rule: suggest(found["rates"], found["losses"], rule).why for rule in RULES},
        "seeds": seeds,
        "val_accuracy": {f"{rate:g}": accuracy[rate] for rate in rates},
        "val_accuracy_per_seed": {f"{rate:g}": per_seed[rate] for rate in rates},
        "best_grid_rate": best,
        "best_grid_accuracy": accuracy[best],
        "suggestion_accuracy": {rule: accuracy[rate] for rule, rate in suggestions.items()},
        "gap_points": {
            rule: round(100 * (accuracy[best] - accuracy[rate]), 1)
            for rule, rate in suggestions.items()
        },
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def report(name: str, stage: str, epochs: int, found: dict) -> None:
    seeds = len(found["seeds"])
    print(f"{name}, {stage}: val accuracy by learning rate (Adam, {epochs} epochs, {seeds} seeds)")
    for rate, value in found["val_accuracy"].items():
        print(f"  {rate:>8}  {value:.3f}")
    print(f"  best of the grid: {found['best_grid_rate']:g} -> {found['best_grid_accuracy']:.3f}")
    for rule, rate in found["suggestions"].items():
        print(
            f"  lr-find ({rule}): {rate:g} -> {found['suggestion_accuracy'][rule]:.3f} "
            f"({found['gap_points'][rule]:+.1f} points below the best)"
        )


def run(args: argparse.Namespace) -> dict:
    work = args.workdir or Path(tempfile.mkdtemp(prefix="lr_find_quality_"))
    shutil.rmtree(work / "runs", ignore_errors=True)  # the runs start anew, the cache stays
    if args.synthetic:
        args.datasets = ["synthetic"]
        make_dataset(work / "data" / "synthetic", {"train": 30, "val": 10})
    else:
        need_shared(SHARED_WEIGHTS, *(SHARED_DATASETS / name for name in args.datasets))
    results: dict = {
        "image_size": args.image_size,
        "epochs": {"finetune": args.head_epochs, "unfreeze": args.unfreeze_epochs},
    }
    grids = {"finetune": args.head_grid, "unfreeze": args.unfreeze_grid}
    seeds = {"finetune": args.head_seeds, "unfreeze": args.unfreeze_seeds}
    for name in args.datasets:
        config = base_config(name, work, args)
        for stage in args.stages:
            found = measure(config, stage, grids[stage], seeds[stage], work)
            results.setdefault("datasets", {}).setdefault(name, {})[stage] = found
            report(name, stage, results["epochs"][stage], found)
    return results


def render(records: list[dict]) -> str:
    """Validation accuracy of the best rate of the grid, and of each rule's suggestion."""
    lines = [
        "| dataset, stage | best of the grid | `descent` (the default) | `minimum` |",
        "|---|---|---|---|",
    ]
    for record in records:
        for name, stages in record["results"]["datasets"].items():
            for stage, found in stages.items():
                cells = [
                    f"{found['suggestions'][rule]:.2g}: {found['suggestion_accuracy'][rule]:.3f} "
                    f"({-found['gap_points'][rule]:+.1f} points)"
                    for rule in RULES
                ]
                best = f"**{found['best_grid_accuracy']:.3f}** at {found['best_grid_rate']:g}"
                lines.append(f"| {name}, {stage} | {best} | {' | '.join(cells)} |")
    return "\n".join(lines)
