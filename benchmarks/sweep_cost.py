"""What does a head-only sweep cost against one `tlcli finetune` of the same config? One command:

    python benchmarks/sweep_cost.py                     # hymenoptera, MobileNetV2 224 px, 20 trials
    python benchmarks/sweep_cost.py --trials 5 --output benchmarks/results/sweep_cost.json

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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
WEIGHTS = SHARED / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
SPACE = {
    "finetune.optimizer.learning_rate": "loguniform(1e-4, 1e-2)",
    "model.head.dropout": "uniform(0.0, 0.5)",
    "finetune.label_smoothing": "uniform(0.0, 0.2)",
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "datasets" / "hymenoptera")
    parser.add_argument("--base", default="mobilenet_v2")
    parser.add_argument("--weights", default=str(WEIGHTS))
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="sweep with -j N, for each N"
    )
    parser.add_argument("--output", type=Path, help="write the measurements as JSON")
    return parser.parse_args()


def config(args: argparse.Namespace, output_dir: Path) -> dict:
    data = {"train_dir": str(args.data / "train"), "image_size": [args.image_size] * 2}
    if (args.data / "val").is_dir():
        data["test_dir"] = str(args.data / "val")  # hymenoptera's val/ serves as its test split
    return {
        "name": "cost",
        "output_dir": str(output_dir),
        "data": data,
        "model": {"base": args.base, "weights": args.weights},
        "finetune": {"epochs": args.epochs},
        "sweep": {"trials": args.trials, "params": SPACE},
    }


def timed(command: list[str], log: Path) -> float:
    started = time.perf_counter()
    with log.open("w") as out:
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - started
    if code != 0:
        sys.exit(f"{' '.join(command)} failed (exit {code}); see {log}")
    return seconds


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


def main() -> None:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="sweep_cost_"))
    path = work / "cost.yaml"
    cfg = config(args, work / "runs")
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    plain = {**cfg, "output_dir": str(work / "finetune-runs")}
    plain.pop("sweep")
    (work / "finetune.yaml").write_text(yaml.safe_dump(plain, sort_keys=False))
    tlcli = [sys.executable, "-m", "tlcli"]
    print(f"[sweep_cost] work folder {work}", file=sys.stderr)
    finetune = timed([*tlcli, "finetune", str(work / "finetune.yaml")], work / "finetune.log")
    print(f"[sweep_cost] one finetune: {finetune:.1f}s", file=sys.stderr)
    result = {
        "settings": {k: str(v) for k, v in vars(args).items()},
        "cpu_count": os.cpu_count(),
        "finetune_seconds": round(finetune, 1),
        "sweeps": {},
    }
    print(f"one `tlcli finetune`: {finetune:7.1f} s")
    for workers in args.workers:
        result["sweeps"][f"workers={workers}"] = measure_sweep(cfg, work, args, workers, finetune)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n")


def measure_sweep(cfg: dict, work: Path, args, workers: int, finetune: float) -> dict:
    out = work / f"sweep-j{workers}"
    path = work / f"sweep-j{workers}.yaml"
    path.write_text(yaml.safe_dump({**cfg, "output_dir": str(out)}, sort_keys=False))
    command = [sys.executable, "-m", "tlcli", "sweep", str(path), "--trials", str(args.trials)]
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


if __name__ == "__main__":
    main()
