"""How fast is tlcli against plain Keras on the same transfer-learning job? One command answers.

    python -m benchmarks transfer                  # sample_data/target, vgg16, 64 px
    python -m benchmarks transfer --synthetic      # photos-like images it makes itself
    python -m benchmarks transfer --data ../shared/datasets/hymenoptera \\
        --base mobilenet_v2 --weights ../shared/weights/<file>.h5 --image-size 160 \\
        --repeat-data 8 --label "A: hymenoptera x8, MobileNetV2 ImageNet, 160 px"
    python -m benchmarks transfer --repeat 5       # 5 interleaved pairs, median ratios

Every step runs in its own subprocess, one after another, never two at a time:

0. warm-up (not reported): every image file is read once and `python -c "import tensorflow"`
   runs once, so that the first tool timed does not pay for a cold disk;
1. plain Keras: `python -m benchmarks.plain_keras`, the Keras guide's two-stage recipe, in one
   process;
2. tlcli, with an equivalent config written to the work folder, in one process, as a user runs
   the whole job: `tlcli run CONFIG` (as `python -m tlcli`, the same `main()` as the `tlcli`
   script): finetune, unfreeze, then evaluate of each trained stage (on test/ when the data
   has one);
3. the floor: `python -m benchmarks.forward_floor`, one forward pass of the base over train + val;
4. TensorFlow import alone: `python -c "import tensorflow"`, timed.

With --repeat N, steps 1 and 2 run N times, interleaved (plain, tlcli, tlcli, plain, ...), each
pair in a fresh folder of its own (tlcli starts from empty caches every time, as in the first
pair); the floor and the import run once. On a busy machine one pair can say 1.2x and the next
0.9x: the machine's drift hits both runs of a pair alike, so each pair's own ratio is compared,
and the table shows each tool's median, the median of the pairs' ratios with their range, and
every pair's ratio. The details under the table are the first pair's.

The table (transfer_table.py prints it; the docs' benchmarks page shows its headline), in
seconds of wall-clock time. Both tools are timed from the launch of their process
(os.wait4 gives its end and peak memory) and by the clocks they record: plain_keras.py's JSON,
tlcli's stage.json `timings` (stage_started_at, first_batch_at, stage_finished_at) and
metrics.json `seconds`.

- start-up: from the launch of the process to the first training batch; for the unfreeze
  stage, from the end of the finetune stage (plain Keras: of its test evaluation; tlcli: of
  saving the finetune model and plots) to its first batch. It holds Python and TensorFlow
  import (finetune only), model building or loading and, for tlcli, data decoding and the
  feature cache.
- stage: plain Keras, the time around `fit()` (which decodes the images in its first epoch);
  tlcli, from the first batch to the end of the stage (fit, saving model.keras and the plots).
- wall: what a user waits for the stage, start-up + stage. plain Keras: launch to the end of
  the first fit(); then the end of the finetune stage (its test evaluation included) to the end
  of the second fit(). tlcli: launch to the end of the finetune stage (stage_finished_at); then
  that to the end of the unfreeze stage. Compare walls for the verdict; start-up and stage show
  where the time goes, and tlcli moves work (decoding, caching) before its first batch.
- evaluate: after each stage; `evaluate()` on test in plain Keras' process; for tlcli, the
  `seconds` of each metrics.json (data, model loading, predict). `tlcli run` evaluates after
  both stages, on val when there is no test split (plain Keras then evaluates nothing).
- whole process: the one process of each tool, launch to exit; "of which process exit" is the
  time from the end of the work (plain Keras: its last timestamp; tlcli: the last file it wrote
  in its run folder) to the exit (printing, interpreter and TensorFlow shutdown).
- plain/tlcli: above 1, tlcli is faster. The accuracy rows show tlcli minus plain Keras.
- peak RSS: ru_maxrss of each process, from os.wait4.

Under the table: tlcli's process split into its stages (start-up = before + data + cache +
other, then fit + after fit), evaluations, the rest and exit, from stage.json `timings`; the
floor (a frozen stage cannot do less than one forward pass over its images; plain Keras does
one per epoch) and each finetune stage divided by it; TensorFlow import time; plain Keras'
epoch times; peak RSS per process; the image counts and the number of unfrozen layers of both
tools, which must match.

The same for both tools: image files, image size, batch size, epochs, optimizers (Adam 1e-3,
then 1e-5), head (average pooling, dropout 0.2, softmax), the layers unfrozen (BatchNorm stays
frozen), augmentation (horizontal flip and zoom), seed; warm-up and compilation stay inside the
times of both. What differs, by design of each tool:

- decoding: tlcli decodes with Pillow at full resolution and resizes as tf.image.resize does
  (bilinear, no antialiasing) into a uint8 array on disk; Keras with tf.image and
  tf.image.resize, caching float32 tensors in memory. Accuracies can differ slightly.
- tlcli's frozen stages train on cached outputs of the frozen bottom: exact without
  augmentation; with --augment, --views augmented views of each training image are cached,
  while plain Keras augments inside the model at every step.
- tlcli reshuffles every epoch; the guide's pipeline replays the first epoch's order.
- tlcli writes epoch backups, TensorBoard logs, model.keras and plots; plain Keras writes
  nothing. tlcli loads its data again for each stage and each evaluation (from its decoded
  image cache after the first) and reloads the saved model to evaluate it; plain Keras keeps
  both in memory.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import yaml

from benchmarks.harness import (
    REPO,
    BenchError,
    ChildRun,
    cli_options,
    module_command,
    note,
    run_child,
    tlcli_command,
)
from benchmarks.synthetic import make_dataset
from benchmarks.transfer_table import (
    STAGES,
    compare_cell,
    plain_summary,
    repeat_summary,
    report,
    tlcli_summary,
)
from tlcli.bases import BASES  # no TensorFlow import: this process only launches the others

DEFAULT_DATA = REPO / "sample_data" / "target"
SPLITS = ("train", "val", "test")
# The top block of each base: what --unfreeze-from-block defaults to.
TOP_BLOCKS = {name: spec.blocks[-1] for name, spec in BASES.items() if spec.blocks}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--data", type=Path, metavar="DIR", help="train/ val/ [test/]; default: the sample data")
    add("--base", choices=sorted(TOP_BLOCKS), default="vgg16", help="default %(default)s")
    add("--weights", default="none", help="none (default) | imagenet | a weights file")
    add("--image-size", type=int, default=64, metavar="N", help="N x N; default %(default)s")
    add("--batch-size", type=int, default=32, metavar="N", help="default %(default)s")
    add("--epochs", type=int, default=5, metavar="E", help="frozen base; default %(default)s")
    add("--unfreeze-epochs", type=int, default=2, metavar="E", help="default %(default)s")
    unfreeze = parser.add_mutually_exclusive_group()
    unfreeze.add_argument("--unfreeze-from-block", metavar="BLOCK", help="default: top block")
    unfreeze.add_argument("--unfreeze-layers", type=int, metavar="N", help="top N base layers")
    add("--augment", action="store_true", help="random horizontal flip and zoom")
    add("--zoom", type=float, default=0.1, help="zoom range; default %(default)s")
    add("--views", type=int, default=4, help="views tlcli caches (0: none); default %(default)s")
    add("--repeat-data", type=int, default=1, metavar="K", help="list each image K times")
    add("--seed", type=int, default=42, help="default %(default)s")
    add("--repeat", type=int, default=1, metavar="N", help="N interleaved plain/tlcli pairs")
    add("--workdir", type=Path, metavar="DIR", help="keep configs, runs and logs here")
    add("--label", help="the table row this run fills (default: its settings, in words)")


def label(args: argparse.Namespace) -> str:
    if args.label:
        return args.label
    data = "synthetic" if args.synthetic else (args.data.name if args.data else "sample data")
    weights = {"none": "random weights", "imagenet": "ImageNet"}.get(args.weights, "ImageNet")
    unfrozen = (
        f"top {args.unfreeze_layers} layers"
        if args.unfreeze_layers is not None
        else f"from {args.unfreeze_from_block or 'the top block'}"
    )
    words = [
        f"{data} x{args.repeat_data}" if args.repeat_data > 1 else data,
        f"{args.base} {weights}",
        f"{args.image_size} px",
        f"{args.epochs} + {args.unfreeze_epochs} epochs ({unfrozen})",
    ]
    if args.augment:
        words.append(
            f"flip + zoom, {args.views} cached views" if args.views else "flip + zoom, uncached"
        )
    return ", ".join(words)


def check_args(args: argparse.Namespace) -> None:
    """Resolve defaults that depend on other options; refuse what would fail later."""
    if args.unfreeze_layers is None and args.unfreeze_from_block is None:
        args.unfreeze_from_block = TOP_BLOCKS[args.base]
    if args.weights not in ("none", "imagenet"):
        args.weights = str(Path(args.weights).expanduser().resolve())
        if not Path(args.weights).is_file():
            raise BenchError(f"--weights: no such file: {args.weights}")
    counts = [args.epochs, args.unfreeze_epochs, args.repeat_data, args.image_size, args.repeat]
    if args.unfreeze_layers is not None:
        counts.append(args.unfreeze_layers)
    if min(counts) < 1:
        raise BenchError(
            "--epochs, --unfreeze-epochs, --repeat-data, --image-size, --repeat, "
            "--unfreeze-layers must be >= 1"
        )
    if args.views < 0:
        raise BenchError("--views must be >= 0")
    if args.workdir is not None and args.workdir.exists() and any(args.workdir.iterdir()):
        raise BenchError(f"--workdir {args.workdir} is not empty (tlcli would refuse its old run)")


# --------------------------------------------------------------------------------------- data


def prepare_data(args: argparse.Namespace, workdir: Path) -> Path:
    """The data folder both tools read: --data, the sample data, or a repeated copy."""
    data = args.data or DEFAULT_DATA
    if args.synthetic and args.data is None:
        data = make_dataset(workdir / "synthetic", {"train": 30, "val": 10, "test": 10})
    elif args.data is None and not DEFAULT_DATA.is_dir():
        data = generate_sample_data(workdir / "sample_data")
    data = data.expanduser().resolve()
    for split in ("train", "val"):
        if not (data / split).is_dir():
            raise BenchError(
                f"{data}: no {split}/ folder (expected train/, val/ and optional test/)"
            )
    if args.repeat_data > 1:
        data = repeat_dataset(data, workdir / "data", args.repeat_data)
    return data


def generate_sample_data(out: Path) -> Path:
    """What `python scripts/make_sample_data.py` makes, in `out`; returns its target task."""
    note(f"{DEFAULT_DATA} not found: generating the sample data in {out}")
    script = REPO / "scripts" / "make_sample_data.py"
    run_child("sample-data", [sys.executable, str(script), "--out", str(out)], out.parent / "logs")
    return out / "target"


def repeat_dataset(source: Path, target: Path, times: int) -> Path:
    """A copy of `source` in which every image appears `times` times, as symlinks."""
    for split in SPLITS:
        for path in sorted((source / split).rglob("*")):
            relative = path.relative_to(source)
            if not path.is_file() or any(part.startswith(".") for part in relative.parts):
                continue
            for copy in range(times):
                name = path.name if copy == 0 else f"{path.stem}__{copy}{path.suffix}"
                link = target / relative.with_name(name)
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(path.resolve())
    return target


def read_every_file(data: Path) -> int:
    """Read all image bytes once, so that neither tool pays for a cold disk; returns bytes."""
    total = 0
    for path in data.rglob("*"):
        if path.is_file():
            total += len(path.read_bytes())
    return total


def present_splits(data: Path) -> list[str]:
    return [split for split in SPLITS if (data / split).is_dir()]


# ---------------------------------------------------------------------------------- processes


def tf_import_command() -> list[str]:
    return [sys.executable, "-c", "import tensorflow"]


def model_options(args: argparse.Namespace, data: Path) -> list[str]:
    """What plain_keras.py and forward_floor.py share: data, base, weights, sizes."""
    return cli_options(
        data=data,
        base=args.base,
        weights=args.weights,
        image_size=args.image_size,
        batch_size=args.batch_size,
    )


def run_plain(
    args: argparse.Namespace, data: Path, workdir: Path, name: str = "plain"
) -> tuple[ChildRun, dict]:
    output = workdir / "plain.json"
    options = cli_options(
        epochs=args.epochs,
        unfreeze_epochs=args.unfreeze_epochs,
        from_block=None if args.unfreeze_layers is not None else args.unfreeze_from_block,
        top_layers=args.unfreeze_layers,
        augment=args.augment,
        zoom=args.zoom,
        seed=args.seed,
        output=output,
    )
    command = module_command("plain_keras", *model_options(args, data), *options)
    return run_child(name, command, workdir / "logs"), json.loads(output.read_text())


def run_floor(args: argparse.Namespace, data: Path, workdir: Path) -> tuple[ChildRun, dict]:
    output = workdir / "floor.json"
    command = module_command(
        "forward_floor", *model_options(args, data), *cli_options(output=output)
    )
    return run_child("floor", command, workdir / "logs"), json.loads(output.read_text())


# -------------------------------------------------------------------------------------- tlcli


def tlcli_config(args: argparse.Namespace, data: Path, run_root: Path) -> dict:
    """A tlcli config that asks for what plain_keras.py does."""
    has_test = "test" in present_splits(data)
    selector = (
        {"layers": args.unfreeze_layers}
        if args.unfreeze_layers is not None
        else {"from_block": args.unfreeze_from_block}
    )
    views = {"cache_views": args.views} if args.augment and args.views else {}
    augment = {"flip": "horizontal", "zoom": args.zoom} if args.augment else "none"
    config = {
        "name": "bench",
        "output_dir": str(run_root),
        "seed": args.seed,
        "data": {
            "train_dir": str(data / "train"),
            "val_dir": str(data / "val"),
            **({"test_dir": str(data / "test")} if has_test else {}),
            "image_size": args.image_size,
            "batch_size": args.batch_size,
            "augment": augment,
        },
        "model": {
            "base": args.base,
            "weights": args.weights,
            "pooling": "avg",
            "head": {"dense": [], "dropout": 0.2},
            "tta": "off",  # the work plain_keras.py does: no head search, TTA or weight mix
        },
        "finetune": {
            "epochs": args.epochs,
            "optimizer": {"name": "adam", "learning_rate": 1e-3},
            "search": "off",
            **views,
        },
        "unfreeze": {
            "epochs": args.unfreeze_epochs,
            "optimizer": {"name": "adam", "learning_rate": 1e-5},
            "interpolate": "off",
            **selector,
            **views,
        },
    }
    if has_test:
        config["evaluate"] = {"split": "test"}
    return config


def run_tlcli(args: argparse.Namespace, data: Path, workdir: Path, name: str = "tlcli") -> dict:
    """`tlcli run CONFIG` in one process: its run, the files it wrote, what it printed."""
    config = workdir / "tlcli.yaml"
    config.write_text(yaml.safe_dump(tlcli_config(args, data, workdir / "runs")))
    tlcli_args = ["run", str(config)]
    command = tlcli_command(*tlcli_args)
    process = run_child(name, command, workdir / "logs", ["tlcli", *tlcli_args])
    run_dir = workdir / "runs" / "bench"
    return {
        "process": asdict(process),
        "last_write_at": last_write_at(run_dir),
        "stages": {stage: read_json(run_dir / stage / "stage.json") for stage in STAGES},
        "metrics": {stage: read_json(run_dir / stage / "metrics.json") for stage in STAGES},
        "data_report": read_json(run_dir / "data_report.json"),
        "trained_layers": trained_layers(Path(process.log)),
    }


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def last_write_at(run_dir: Path) -> float | None:
    """When tlcli wrote its last file (the last confusion matrix): the end of its work."""
    times = [path.stat().st_mtime for path in run_dir.rglob("*") if path.is_file()]
    return max(times, default=None)


def trained_layers(log: Path) -> int | None:
    """The number in tlcli's "training 3 base layers with weights" line."""
    found = re.search(r"training (\d+) base layers", log.read_text(errors="replace"))
    return int(found.group(1)) if found else None


# --------------------------------------------------------------------------------------- main


def pair_place(workdir: Path, pair: int, pairs: int) -> tuple[Path, str]:
    """The folder of pair `pair` (from 1) of `pairs`, and the suffix of its process names.

    A single pair keeps the work folder's old layout. Repeated pairs get a folder each: tlcli
    refuses to overwrite an old run, and reusing its caches (in the run folder) would make
    every pair after the first faster than a user's first run.
    """
    if pairs == 1:
        return workdir, ""
    return workdir / f"pair-{pair}", f"-{pair}"


def run_pair(args: argparse.Namespace, data: Path, workdir: Path, pair: int) -> dict:
    """Plain Keras and tlcli back to back: what each did and the table's numbers. Even pairs
    run tlcli first, so that whatever running second does (a warm page cache, a machine that
    drifts) falls on both tools equally."""
    folder, suffix = pair_place(workdir, pair, args.repeat)
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    if pair % 2 == 0:
        tlcli = run_tlcli(args, data, folder, f"tlcli{suffix}")
    plain_process, plain_result = run_plain(args, data, folder, f"plain{suffix}")
    if pair % 2 == 1:
        tlcli = run_tlcli(args, data, folder, f"tlcli{suffix}")
    plain = {"process": asdict(plain_process), "result": plain_result}
    summary = {
        "plain": plain_summary(plain["process"], plain_result),
        "tlcli": tlcli_summary(tlcli),
    }
    if args.repeat > 1:
        note(f"pair {pair} of {args.repeat}: " + pair_ratios(summary))
    return {"plain": plain, "tlcli": tlcli, "summary": summary}


def pair_ratios(summary: dict) -> str:
    """One pair's wall ratios, for the progress line: a drifting machine shows here first."""
    plain, tlcli = summary["plain"], summary["tlcli"]
    keys = ("finetune_wall", "unfreeze_wall", "whole")
    return ", ".join(f"{key} {compare_cell(plain[key], tlcli[key], 's')}" for key in keys)


def run_benchmark(args: argparse.Namespace, workdir: Path) -> dict:
    """Every measurement, one process at a time; the results as one JSON-ready dict.

    With --repeat N the top-level "plain", "tlcli" and "summary" are the first pair's (what the
    details under the table show, and what a single run writes); "repeats" holds all N pairs,
    the first included, and "repeat_summary" the medians the table prints.
    """
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    data = prepare_data(args, workdir)
    note(f"data: {data} ({read_every_file(data) / 2**20:.1f} MB read to warm the page cache)")
    run_child("warm-up-import", tf_import_command(), logs)
    # Interleaved pairs (plain, tlcli, tlcli, plain, ...: see run_pair), not all plain runs then
    # all tlcli runs, so that a slow spell of the machine falls on both tools of a pair.
    pairs = [run_pair(args, data, workdir, pair) for pair in range(1, args.repeat + 1)]
    floor_process, floor_result = run_floor(args, data, workdir)
    tf_import = run_child("tf-import", tf_import_command(), logs)
    results = {
        "data": str(data),
        "plain": pairs[0]["plain"],
        "tlcli": pairs[0]["tlcli"],
        "floor": {"process": asdict(floor_process), "result": floor_result},
        "tf_import": asdict(tf_import),
        "summary": pairs[0]["summary"],
    }
    if args.repeat > 1:
        results["repeats"] = pairs
        results["repeat_summary"] = repeat_summary(pairs)
    return results


def run(args: argparse.Namespace) -> dict:
    check_args(args)
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="bench_transfer_"))).resolve()
    try:
        results = run_benchmark(args, workdir)
    except BenchError:
        note(f"kept {workdir} for inspection")
        raise
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    results["table"] = report({**results, "settings": settings})
    print(results["table"])
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def render(records: list[dict]) -> str:
    """A row per label: walls plain / tlcli with their ratio, accuracy, memory, the floor."""
    lines = [
        "| run | finetune wall, plain / tlcli | finetune after start-up | unfreeze wall "
        "| whole process | tlcli finetune: wall / floor, cache / floor "
        "| val accuracy plain / tlcli: finetune; unfreeze | peak RSS MB, plain / tlcli |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for record in records:
        lines.append("| " + " | ".join([record["label"], *_cells(record["results"])]) + " |")
    return "\n".join(lines)


def _cells(results: dict) -> list[str]:
    repeated = results.get("repeat_summary")
    plain, tlcli = results["summary"]["plain"], results["summary"]["tlcli"]

    def value(key: str, tool: str) -> float | None:
        return repeated[key][tool] if repeated else results["summary"][tool][key]

    def ratio(key: str) -> str:
        cell = compare_cell(value(key, "plain"), value(key, "tlcli"), "s")
        if repeated and repeated[key].get("min") is not None:
            spread = repeated[key]
            cell = f"{spread['compare']:.2f}x ({spread['min']:.2f}-{spread['max']:.2f})"
        return cell

    def wall(key: str) -> str:
        return f"{value(key, 'plain'):.0f} / {value(key, 'tlcli'):.0f} s: **{ratio(key)}**"

    forward = results["floor"]["result"]["forward_seconds"]
    cache = results["tlcli"]["stages"]["finetune"].get("timings", {}).get("cache_seconds")
    if cache:
        floor = f"{tlcli['finetune_wall'] / forward:.1f}x, {cache / forward:.1f}x ({forward:.1f} s)"
    else:
        floor = "- (uncached)"
    accuracy = "; ".join(
        f"{plain[f'val_{stage}']:.3f} / {tlcli[f'val_{stage}']:.3f}" for stage in STAGES
    )
    return [
        wall("finetune_wall"),
        ratio("finetune_stage"),
        wall("unfreeze_wall"),
        wall("whole"),
        floor,
        accuracy,
        f"{value('peak_rss_mb', 'plain'):.0f} / {value('peak_rss_mb', 'tlcli'):.0f}",
    ]
