"""Model quality: tlcli's defaults against the hand-written Keras recipe, on real photographs.

    python -m benchmarks quality                      # both datasets of ../shared, 3 seeds
    python -m benchmarks quality --datasets hymenoptera --seeds 1 2 --image-size 128
    python -m benchmarks quality --synthetic --seeds 1 --image-size 64   # no ../shared

For each dataset and seed, in one run: `python -m benchmarks.plain_keras` with the Keras guide's
recipe as users write it (head at 1e-3 for --epochs, then the top 20 layers of the base at 1e-4
with BatchNorm frozen for --unfreeze-epochs), and `tlcli run` with a config that names only the
data, the base, the weights, the image size and the epochs (every other setting is tlcli's
default). Both use MobileNetV2 with the real ImageNet weights of ../shared/weights
(`--synthetic`: random weights, on photos-like images the suite makes, which exercises the
comparison, not the recipes). It
prints test accuracy and macro F1 after each stage, mean and spread over the seeds, and what
tlcli's head search chose.

Datasets (from ../shared/datasets, symlinked into the work folder; nothing is copied):
- hymenoptera: 2 classes. Its val/ folder (153 images) is the test split; the validation split
  is 20% of train/, drawn once with a fixed seed, the same for both tools.
- clothing: 10 imbalanced classes; train/, validation/ and test/ as given.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.harness import (
    REPO,
    SHARED_DATASETS,
    SHARED_WEIGHTS,
    module_command,
    need_shared,
    tlcli_command,
)
from benchmarks.synthetic import make_dataset

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--datasets", nargs="+", default=["hymenoptera", "clothing"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--epochs", type=int, default=10, help="frozen-base epochs")
    parser.add_argument("--unfreeze-epochs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, help="keep runs here (default: a temp folder)")


def label(args: argparse.Namespace) -> str:
    if args.synthetic:
        return "synthetic"
    return f"{' and '.join(args.datasets)}, MobileNetV2 ImageNet, {args.image_size} px"


def images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def link_split(files: list[Path], source: Path, target: Path) -> None:
    for path in files:
        link = target / path.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path.resolve())


def prepare(name: str, work: Path) -> Path:
    """train/ val/ test/ folders of symlinks for dataset `name`."""
    source, data = SHARED_DATASETS / name, work / "data" / name
    if data.is_dir():
        return data
    need_shared(source)
    if (source / "test").is_dir():
        for split, folder in (("train", "train"), ("val", "validation"), ("test", "test")):
            folder = folder if (source / folder).is_dir() else split
            link_split(images(source / folder), source / folder, data / split)
        return data
    train = images(source / "train")
    random.Random(0).shuffle(train)
    cut = len(train) // 5
    link_split(train[cut:], source / "train", data / "train")
    link_split(train[:cut], source / "train", data / "val")
    link_split(images(source / "val"), source / "val", data / "test")
    return data


def weights(args) -> str:
    return "none" if args.synthetic else str(SHARED_WEIGHTS)


def run_plain(args, data: Path, seed: int, work: Path) -> dict:
    output = work / f"plain-{data.name}-{seed}.json"
    command = [
        *module_command("plain_keras"), "--data", str(data),
        "--base", "mobilenet_v2", "--weights", weights(args), "--image-size", str(args.image_size),
        "--epochs", str(args.epochs), "--unfreeze-epochs", str(args.unfreeze_epochs),
        "--top-layers", "20", "--unfreeze-lr", "1e-4", "--f1", "--seed", str(seed),
        "--output", str(output),
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   cwd=REPO)  # fmt: skip
    stages = json.loads(output.read_text())["stages"]
    result = {
        stage: {"accuracy": stages[stage]["test_accuracy"], "f1": stages[stage]["test_f1_macro"],
                "val_accuracy": stages[stage]["val_accuracy"]}
        for stage in ("finetune", "unfreeze")
    }  # fmt: skip
    return {**result, "seconds": round(time.perf_counter() - started, 1)}


def run_tlcli(args, data: Path, seed: int, work: Path) -> dict:
    config = {
        "name": f"{data.name}-{seed}",
        "output_dir": str(work / "runs"),
        "cache_dir": str(work / "cache"),
        "seed": seed,
        "data": {
            "train_dir": str(data / "train"),
            "val_dir": str(data / "val"),
            "test_dir": str(data / "test"),
            "image_size": [args.image_size, args.image_size],
        },
        "model": {"base": "mobilenet_v2", "weights": weights(args)},
        "finetune": {"epochs": args.epochs},
        "unfreeze": {"epochs": args.unfreeze_epochs},
    }
    path = work / f"tlcli-{data.name}-{seed}.yaml"
    path.write_text(yaml.safe_dump(config))
    started = time.perf_counter()
    subprocess.run(tlcli_command("run", path, "--overwrite", "--quiet"), check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    seconds = round(time.perf_counter() - started, 1)
    run = work / "runs" / config["name"]
    result: dict = {"seconds": seconds}
    for stage in ("finetune", "unfreeze"):
        metrics = json.loads((run / stage / "metrics.json").read_text())
        state = json.loads((run / stage / "stage.json").read_text())
        result[stage] = {
            "accuracy": metrics["accuracy"],
            "f1": metrics["f1_macro"],
            "val_accuracy": state["final"].get("val_accuracy"),
            "chose": {k: state[k] for k in ("search", "weight_mix", "tta") if state.get(k)},
        }
        result[stage]["fit_seconds"] = state["timings"]["fit_seconds"]
    return result


def spread(values: list[float]) -> str:
    mean = statistics.mean(values)
    low, high = min(values), max(values)
    return f"{mean:.3f} ({low:.3f}-{high:.3f})"


def summarise(results: dict) -> list[list[str]]:
    rows = []
    for dataset, by_tool in results["datasets"].items():
        for tool in ("plain", "tlcli"):
            runs = by_tool[tool]
            if not runs:
                continue
            row = [dataset, tool, str(len(runs))]
            for stage in ("finetune", "unfreeze"):
                row.append(spread([r[stage]["accuracy"] for r in runs]))
                row.append(spread([r[stage]["f1"] for r in runs]))
            row.append(f"{statistics.mean(r['seconds'] for r in runs):.0f}")
            row.append(_search_share(runs) if tool == "tlcli" else "")
            rows.append(row)
    return rows


def _search_share(runs: list[dict]) -> str:
    """Seconds of the finetune stage (mirror pass + search) and of the weight mix, as a share of
    the whole run: an upper bound of what they add (they replace the Keras head training)."""
    shares = []
    for run in runs:
        mix = run["unfreeze"]["chose"].get("weight_mix", {}).get("seconds", 0.0)
        shares.append((run["finetune"]["fit_seconds"] + mix) / run["seconds"])
    return f"{100 * statistics.mean(shares):.0f}%"


HEADER = ["dataset", "recipe", "seeds", "finetune acc", "finetune F1", "unfreeze acc",
          "unfreeze F1", "wall s", "search+mix"]  # fmt: skip


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    for row in [HEADER, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))


def render(records: list[dict]) -> str:
    """Test accuracy and macro F1 per dataset and recipe, mean (min-max) over the seeds."""
    lines = [
        "| dataset | recipe | seeds | after finetune: accuracy | F1 | after unfreeze: accuracy "
        "| F1 | wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for record in records:
        for row in summarise(record["results"]):
            bold = row[1] == "tlcli"
            cells = [f"**{cell}**" if bold and 3 <= i <= 6 else cell for i, cell in enumerate(row)]
            lines.append("| " + " | ".join(cells[:8]) + " |")
    return "\n".join(lines)


def print_choices(results: dict) -> None:
    """What tlcli's search chose, per dataset and seed."""
    for dataset, by_tool in results["datasets"].items():
        for run in by_tool["tlcli"]:
            search = run["finetune"]["chose"].get("search", {})
            mix = run["unfreeze"]["chose"].get("weight_mix", {})
            print(
                f"{dataset} seed {run['seed']}: head L2 {search.get('lambda')}, mirror "
                f"{search.get('mirror')}, TTA {run['finetune']['chose'].get('tta')}; "
                f"unfreeze weight mix {mix.get('chosen')} (val {mix.get('val_accuracy')})"
            )


def run(args: argparse.Namespace) -> dict:
    if args.synthetic:
        args.datasets = ["synthetic"]
    else:
        need_shared(SHARED_WEIGHTS)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="tlcli-quality-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    results: dict = {"datasets": {}}
    for name in args.datasets:
        if name == "synthetic":
            data = make_dataset(work / "data" / name, {"train": 30, "val": 10, "test": 10})
        else:
            data = prepare(name, work)
        results["datasets"][name] = by_tool = {"plain": [], "tlcli": []}
        for seed in args.seeds:
            by_tool["plain"].append({"seed": seed, **run_plain(args, data, seed, work)})
            by_tool["tlcli"].append({"seed": seed, **run_tlcli(args, data, seed, work)})
            for tool in ("plain", "tlcli"):
                last = by_tool[tool][-1]
                print(f"{name} seed {seed} {tool}: finetune {last['finetune']['accuracy']:.3f}, "
                      f"unfreeze {last['unfreeze']['accuracy']:.3f} ({last['seconds']:.0f}s)",
                      flush=True)  # fmt: skip
    print_table(summarise(results))
    print_choices(results)
    return results
