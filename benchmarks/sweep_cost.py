"""What does a head-only sweep cost against one `tlcli finetune` of the same config? One command:

    python -m benchmarks sweep-cost              # hymenoptera, MobileNetV2 224 px, 20 trials
    python -m benchmarks sweep-cost --trials 5
    python -m benchmarks sweep-cost --synthetic --trials 4 --image-size 64 --workers 1

Both run from cold (a fresh output folder: images decoded and features cached anew), one after
the other, each as its own process, as a user would run them:

1. `tlcli finetune CONFIG` (the config without its sweep section: finetune only, 10 epochs);
2. `tlcli sweep CONFIG --trials N -j W`: N trials over finetune keys only (learning rate,
   dropout, label smoothing); the best trial is evaluated at the end. With -j 1 in one process;
   with -j 2 in two on one study (a trial's Keras overhead is mostly one core's work). Each
   sweep starts from cold too (its own output folder).

It prints both walls and their ratio (the target: at most 2), then where a trial's time goes,
from each trial's stage.json (`timings`) and trial.json: data (finding the files, loading the
decoded images), the feature cache (looking it up; built once, by the first trial), fit, and
the rest (building the model around the shared base, saving model.keras, the curves, the
bookkeeping). Measured on whatever else the machine is doing: run it on a quiet one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
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

SPACE = {
    "finetune.optimizer.learning_rate": "loguniform(1e-4, 1e-2)",
    "model.head.dropout": "uniform(0.0, 0.5)",
    "finetune.label_smoothing": "uniform(0.0, 0.2)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=SHARED_DATASETS / "hymenoptera")
    parser.add_argument("--base", default="mobilenet_v2")
    parser.add_argument("--weights", default=str(SHARED_WEIGHTS))
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="sweep with -j N, for each N"
    )


def label(args: argparse.Namespace) -> str:
    data = "synthetic" if args.synthetic else args.data.name
    return f"{data}, {args.base}, {args.image_size} px, {args.trials} trials"


def config(args: argparse.Namespace, output_dir: Path) -> dict:
    data = {"train_dir": str(args.data / "train"), "image_size": [args.image_size] * 2}
    if (args.data / "val").is_dir():  # hymenoptera's val/ serves as its test split
        data["test_dir"] = str(args.data / "val")
    return {
        "name": "cost",
        "output_dir": str(output_dir),
        "data": data,
        "model": {"base": args.base, "weights": args.weights},
        "finetune": {"epochs": args.epochs},
        "sweep": {"trials": args.trials, "params": SPACE},
    }


def timed(command: list[str], log: Path) -> float:
    return run_child(log.stem, command, log.parent).seconds


def trial_breakdown(sweep_dir: Path) -> list[dict]:
    rows = []
    for trial in sorted((sweep_dir / "trials").glob("*")):
        record = json.loads((trial / "trial.json").read_text())
        stage = json.loads((trial / "finetune" / "stage.json").read_text())
        timing = stage["timings"]
        data, cache, fit = timing["data_seconds"], timing["cache_seconds"], timing["fit_seconds"]
        rows.append(
            {
                "trial": trial.name,
                "seconds": record["seconds"],
                "data": data,
                "cache": cache,
                "fit": fit,
                "rest": round(record["seconds"] - data - cache - fit, 2),
                "state": record["state"],
            }
        )
    return rows


def run(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="sweep_cost_"))
    if args.synthetic:
        args.data = make_dataset(work / "data", {"train": 30, "val": 10})
        args.weights = "none"
    else:
        need_shared(args.data, Path(args.weights))
    path = work / "cost.yaml"
    cfg = config(args, work / "runs")
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    plain = {**cfg, "output_dir": str(work / "finetune-runs")}
    plain.pop("sweep")
    (work / "finetune.yaml").write_text(yaml.safe_dump(plain, sort_keys=False))
    finetune = timed(tlcli_command("finetune", work / "finetune.yaml"), work / "finetune.log")
    result = {
        "cpu_count": os.cpu_count(),
        "finetune_seconds": round(finetune, 1),
        "sweeps": {},
    }
    print(f"one `tlcli finetune`: {finetune:7.1f} s")
    for workers in args.workers:
        result["sweeps"][f"workers={workers}"] = measure_sweep(cfg, work, args, workers, finetune)
    return result


def render(records: list[dict]) -> str:
    """One finetune against the whole sweep, and where a later trial's time goes."""
    lines = [
        "| setting | one `tlcli finetune` | sweep, `-j` | sweep / finetune | first trial "
        "| later trials, mean: all = fit + rest | pruned |",
        "|---|---|---|---|---|---|---|",
    ]
    for record in records:
        results = record["results"]
        for name, sweep in results["sweeps"].items():
            mean = sweep["later_trials_mean"]
            lines.append(
                f"| {record['label']} | {results['finetune_seconds']:.0f} s "
                f"| {sweep['sweep_seconds']:.0f} s (`-j {name.split('=')[1]}`) "
                f"| **{sweep['ratio']:.1f}x** | {sweep['first_trial']['seconds']:.1f} s "
                f"| {mean['seconds']:.1f} s = {mean['fit']:.1f} + {mean['rest']:.1f} s "
                f"| {sweep['pruned']} of {len(sweep['trials'])} |"
            )
    return "\n".join(lines)


def measure_sweep(cfg: dict, work: Path, args, workers: int, finetune: float) -> dict:
    out = work / f"sweep-j{workers}"
    path = work / f"sweep-j{workers}.yaml"
    path.write_text(yaml.safe_dump({**cfg, "output_dir": str(out)}, sort_keys=False))
    command = tlcli_command("sweep", path, "--trials", args.trials)
    sweep = timed([*command, "-j", str(workers)], work / f"sweep-j{workers}.log")
    rows = trial_breakdown(out / "cost-sweep")  # tlcli.experiments.sweep.sweep_folder
    later = rows[1:] or rows
    keys = ("seconds", "data", "cache", "fit", "rest")
    mean = {k: round(statistics.mean(r[k] for r in later), 2) for k in keys}
    ratio = sweep / finetune
    print(f"`tlcli sweep -j {workers}`, {len(rows)} trials: {sweep:7.1f} s   ratio {ratio:.2f}")
    first = rows[0]
    print(
        f"  first trial: {first['seconds']:.1f} s (data {first['data']}, cache {first['cache']}, "
        f"fit {first['fit']}, rest {first['rest']})"
    )
    print(
        f"  later trials, mean: {mean['seconds']:.2f} s = data {mean['data']} + cache "
        f"{mean['cache']} + fit {mean['fit']} + rest {mean['rest']} (model, model.keras, "
        "curves, bookkeeping)"
    )
    return {
        "sweep_seconds": round(sweep, 1),
        "ratio": round(ratio, 2),
        "first_trial": first,
        "later_trials_mean": mean,
        "pruned": sum(r["state"] == "pruned" for r in rows),
        "trials": rows,
    }
