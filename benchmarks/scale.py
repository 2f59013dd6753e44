"""How tlcli's cost grows with the number of images: time per image per part, memory, disk.

For each N, N JPEG images are made on the fly (random shapes and noise on random backgrounds,
each its own size between 100 and 260 px and its own JPEG quality, so that decoding costs what
real photos of that size cost), in 4 class folders, then `tlcli run` trains on them in its own
process (as a user runs it): MobileNetV2 (random weights: the cost depends on sizes, not
values) at 96 px, batch 64, val_split 0.1,

- finetune: 3 epochs on cached features (the cache pass runs the frozen base once per image),
- unfreeze: `layers: all`, 1 epoch (uncached: the whole network trains),
- evaluate after each stage.

Reported per N, from the run's stage.json timings and the process (os.wait4):
seconds per 1,000 images of each part (decode, cache pass, head epochs, unfreeze epoch), peak
RSS, and disk per image (the decoded-image cache, the feature cache, the run's other files).

    python -m benchmarks scale --sizes 1000 10000 --plot docs/images/scale.png
    python -m benchmarks scale --sizes 500        # a quick run

Time per image should stay flat as N grows (every part is linear), and peak RSS should too. The
peaks of the process's own memory (RssAnon) and of mapped file pages (RssFile) are sampled from
/proc as well. The images are always made by the suite: `--synthetic` changes nothing here.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

import yaml

from benchmarks.harness import run_child, tlcli_command
from benchmarks.synthetic import make_photos

PARTS = ("decode", "cache pass", "head epochs", "unfreeze epoch")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000], metavar="N")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--head-epochs", type=int, default=3)
    parser.add_argument("--plot", type=Path, help="a PNG of time per image and peak RSS vs N")
    parser.add_argument("--workdir", type=Path, help="keep the images and runs here")


def label(args: argparse.Namespace) -> str:
    return "synthetic" if args.synthetic else f"MobileNetV2, {args.image_size} px"


def config(args: argparse.Namespace, data: Path, runs: Path) -> dict:
    return {
        "name": "scale",
        "output_dir": str(runs),
        "seed": 1,
        "data": {
            "train_dir": str(data),
            "val_split": 0.1,
            "image_size": args.image_size,
            "batch_size": args.batch_size,
        },
        # The plain recipe (no head search, flip TTA or weight mix): what is measured is how
        # each part of a stage scales, not tlcli's defaults on top of it.
        "model": {"base": "mobilenet_v2", "weights": "none", "head": {"dense": []}, "tta": "off"},
        "finetune": {"epochs": args.head_epochs, "cache": "on", "search": "off"},
        "unfreeze": {"epochs": 1, "layers": "all", "interpolate": "off"},
    }


def sample_memory(pid: int, peaks: dict[str, int], every: float = 0.2) -> None:
    """Peak RssAnon and RssFile (kB) of process `pid`, from /proc, until it exits."""
    status = Path(f"/proc/{pid}/status")
    while True:
        try:
            text = status.read_text()
        except OSError:
            return
        for line in text.splitlines():
            name, _, value = line.partition(":")
            if name in peaks:
                peaks[name] = max(peaks[name], int(value.split()[0]))
        if "State:\tZ" in text:
            return
        time.sleep(every)


def folder_bytes(folder: Path, pattern: str = "*") -> int:
    return sum(p.stat().st_size for p in folder.rglob(pattern) if p.is_file())


def run_size(args: argparse.Namespace, count: int, workdir: Path) -> dict:
    """Make `count` images, `tlcli run` on them, and read what it recorded."""
    data = workdir / f"data-{count}"
    generate_seconds = make_photos(data, count)
    runs = workdir / f"runs-{count}"
    config_path = workdir / f"scale-{count}.yaml"
    config_path.write_text(yaml.safe_dump(config(args, data, runs)))
    print(f"[scale] N={count}: images made in {generate_seconds:.0f} s; tlcli run ...", flush=True)
    peaks = {"RssAnon": 0, "RssFile": 0}
    samplers = []

    def sample(pid: int) -> None:
        samplers.append(threading.Thread(target=sample_memory, args=(pid, peaks), daemon=True))
        samplers[0].start()

    child = run_child(
        f"tlcli-{count}", tlcli_command("run", config_path), workdir / "logs", on_start=sample
    )
    samplers[0].join()
    seconds = child.seconds
    run = runs / "scale"
    finetune = json.loads((run / "finetune" / "stage.json").read_text())["timings"]
    unfreeze = json.loads((run / "unfreeze" / "stage.json").read_text())["timings"]
    evaluations = [
        json.loads((run / stage / "metrics.json").read_text())["seconds"]
        for stage in ("finetune", "unfreeze")
    ]
    cache = run / "cache"
    parts = {
        "decode": finetune["data_seconds"],
        "cache pass": finetune["cache_seconds"],
        "head epochs": finetune["fit_seconds"],
        "unfreeze epoch": unfreeze["fit_seconds"],
    }
    result = {
        "images": count,
        "process_seconds": round(seconds, 1),
        "parts_seconds": parts,
        "evaluate_seconds": evaluations,
        "peak_rss_mb": round(child.max_rss_mb),
        "peak_anonymous_mb": round(peaks["RssAnon"] / 2**10),
        "peak_file_pages_mb": round(peaks["RssFile"] / 2**10),
        "bytes": {
            "jpeg files": folder_bytes(data),
            "decoded images": folder_bytes(cache, "images-*.npy"),
            "cached features": folder_bytes(cache, "features-*.npy"),
            "run (models, logs, reports)": folder_bytes(run) - folder_bytes(cache),
        },
    }
    print(
        f"[scale] N={count}: {seconds:.0f} s, peak RSS {result['peak_rss_mb']} MB "
        f"(anonymous {result['peak_anonymous_mb']} MB, file pages {result['peak_file_pages_mb']}"
        " MB)",
        flush=True,
    )
    shutil.rmtree(data)  # the largest part; the run stays for inspection with --workdir
    shutil.rmtree(cache)
    return result


def table(results: list[dict]) -> str:
    head = f"{'images':>8}" + "".join(f"{p:>16}" for p in PARTS)
    head += f"{'whole run':>11}{'peak RSS':>10}{'anon':>9}{'disk/img':>10}"
    lines = ["seconds per 1,000 images (whole run: the process, evaluate included)", head]
    for result in results:
        n = result["images"]
        per_k = [result["parts_seconds"][p] / n * 1000 for p in PARTS]
        disk = (result["bytes"]["decoded images"] + result["bytes"]["cached features"]) / n
        lines.append(
            f"{n:>8,}" + "".join(f"{v:>16.2f}" for v in per_k)
            + f"{result['process_seconds'] / n * 1000:>11.2f}"
            + f"{result['peak_rss_mb']:>7} MB"
            + (f"{result['peak_anonymous_mb']:>6} MB" if "peak_anonymous_mb" in result
               else f"{'-':>9}")
            + f"{disk / 1024:>7.1f} KB"
        )  # fmt: skip
    lines.append("anon: peak of the process's own memory (RSS less mapped file pages)")
    lines.append("disk/img: the decoded-image cache + the feature cache, per image")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["images"] for r in results]
    figure, (times, memory) = plt.subplots(1, 2, figsize=(10, 4))
    for part in PARTS:
        per_k = [r["parts_seconds"][part] / r["images"] * 1000 for r in results]
        times.plot(sizes, per_k, marker="o", label=part)
    times.set(xscale="log", xlabel="images", ylabel="seconds per 1,000 images", ylim=(0, None))
    times.legend()
    memory.plot(sizes, [r["peak_rss_mb"] for r in results], marker="o", label="peak RSS (MB)")
    if all("peak_anonymous_mb" in r for r in results):
        anonymous = [r["peak_anonymous_mb"] for r in results]
        memory.plot(sizes, anonymous, marker="^", label="peak anonymous memory (MB)")
    disk = [(r["bytes"]["decoded images"] + r["bytes"]["cached features"]) / 2**20 for r in results]
    memory.plot(sizes, disk, marker="s", label="cache on disk (MB)")
    memory.set(xscale="log", yscale="log", xlabel="images")
    memory.legend()
    figure.suptitle("tlcli run: MobileNetV2, 96 px, 3 cached head epochs + 1 unfrozen epoch")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def run(args: argparse.Namespace) -> dict:
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="scale_"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    results = [run_size(args, count, workdir) for count in sorted(args.sizes)]
    print(table(results))
    if args.plot:
        plot(results, args.plot)
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return {"sizes": results}


def render(records: list[dict]) -> str:
    """Seconds per 1,000 images of each part, memory and disk, a row per N of each record."""
    lines = [
        "| images | decode | cache pass | 3 head epochs | 1 unfrozen epoch | whole process "
        "| peak RSS (anonymous) | disk per image |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for record in records:
        for size in record["results"]["sizes"]:
            n = size["images"]
            per_k = [f"{size['parts_seconds'][part] / n * 1000:.2f} s" for part in PARTS]
            disk = (size["bytes"]["decoded images"] + size["bytes"]["cached features"]) / n
            anonymous = size.get("peak_anonymous_mb")
            memory = f"{size['peak_rss_mb']:,} MB" + (f" ({anonymous:,})" if anonymous else "")
            whole = f"{size['process_seconds'] / n * 1000:.1f} s"
            name = f"{n:,}" + (f" ({record['label']})" if len(records) > 1 else "")
            lines.append(
                f"| {name} | {' | '.join(per_k)} | {whole} | {memory} | {disk / 1024:.0f} KB |"
            )
    return "\n".join(lines)
