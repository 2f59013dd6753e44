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

    python benchmarks/scale.py --sizes 1000 10000 --output scale.json --plot scale.png

Time per image should stay flat as N grows (every part is linear), and peak RSS should too:
the decoded images and the cached features are memory maps, read one batch (or chunk) at a
time. RSS counts the pages of those maps once read (file pages, which the kernel reclaims under
pressure), so the peaks of the process's own memory (RssAnon) and of mapped file pages
(RssFile) are sampled from /proc as well.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageDraw

CLASSES = 4
PARTS = ("decode", "cache pass", "head epochs", "unfreeze epoch")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000], metavar="N")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--head-epochs", type=int, default=3)
    parser.add_argument("--output", type=Path, help="results as JSON (also read back: runs add)")
    parser.add_argument("--plot", type=Path, help="a PNG of time per image and peak RSS vs N")
    parser.add_argument("--workdir", type=Path, help="keep the images and runs here")
    return parser.parse_args(argv)


def make_image(path: Path, index: int) -> None:
    """One varied JPEG: its class decides the shape drawn, its index everything else."""
    rng = np.random.default_rng(index)
    width, height = (int(v) for v in rng.integers(100, 261, 2))
    background = tuple(int(v) for v in rng.integers(0, 256, 3))
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 6))):
        box = sorted(rng.integers(0, width, 2)), sorted(rng.integers(0, height, 2))
        xy = [box[0][0], box[1][0], box[0][1] + 1, box[1][1] + 1]
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        [draw.rectangle, draw.ellipse, draw.line, draw.polygon][index % CLASSES](
            xy if index % CLASSES != 3 else [(xy[0], xy[3]), (xy[2], xy[3]), (xy[0], xy[1])],
            fill=fill,
        )
    noise = rng.integers(-20, 21, (height, width, 3))
    pixels = np.clip(np.asarray(image, np.int16) + noise, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=int(rng.integers(70, 96)))


def make_images(folder: Path, count: int) -> float:
    """`count` images in folder/class_k/; returns the seconds it took (not part of the run)."""
    started = time.perf_counter()
    for k in range(CLASSES):
        (folder / f"class_{k}").mkdir(parents=True, exist_ok=True)
    paths = [folder / f"class_{i % CLASSES}" / f"{i:07d}.jpg" for i in range(count)]
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        list(pool.map(make_image, paths, range(count)))
    return time.perf_counter() - started


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
    generate_seconds = make_images(data, count)
    runs = workdir / f"runs-{count}"
    config_path = workdir / f"scale-{count}.yaml"
    config_path.write_text(yaml.safe_dump(config(args, data, runs)))
    log = workdir / f"tlcli-{count}.log"
    print(f"[scale] N={count}: images made in {generate_seconds:.0f} s; tlcli run ...", flush=True)
    with log.open("w") as out:
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "tlcli", "run", str(config_path)], stdout=out, stderr=out
        )
        peaks = {"RssAnon": 0, "RssFile": 0}
        sampler = threading.Thread(target=sample_memory, args=(process.pid, peaks), daemon=True)
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        sampler.join()
        seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"tlcli run failed for N={count}: see {log}")
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
        "peak_rss_mb": round(usage.ru_maxrss / 2**10),
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    earlier = []
    if args.output and args.output.is_file():
        earlier = json.loads(args.output.read_text())["results"]
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="scale_"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    results = {r["images"]: r for r in earlier}
    for count in args.sizes:
        results[count] = run_size(args, count, workdir)
        ordered = [results[n] for n in sorted(results)]
        if args.output:  # after each size: a long run keeps what it measured
            args.output.write_text(
                json.dumps({"settings": vars(args), "results": ordered}, indent=2, default=str)
            )
    print(table(ordered))
    if args.plot:
        plot(ordered, args.plot)
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
