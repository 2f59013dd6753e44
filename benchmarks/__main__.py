"""`python -m benchmarks <suite> [options]`: run one suite and record its result file.

python -m benchmarks --help                 # the suites
python -m benchmarks scale --synthetic      # one suite on images it makes itself
python -m benchmarks report                 # the tables of docs/benchmarks.md, from results/
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from pathlib import Path

from benchmarks.harness import RESULTS, BenchError, BenchSkip, environment, note, write_result

# name -> (module, what it measures). Modules are imported only for the suite that runs, so that
# --help stays instant.
SUITES = {
    "transfer": (
        "transfer",
        "tlcli against the Keras guide's recipe written by hand: time, accuracy, memory",
    ),
    "quality": (
        "quality",
        "tlcli's defaults against the hand-written recipe: test accuracy and F1 over seeds",
    ),
    "scale": ("scale", "time per image, memory and disk from 1,000 to 100,000 images"),
    "pipeline": (
        "pipeline",
        "images per second of the input pipeline alone, with and without augmentation",
    ),
    "profile-uncached": (
        "profile_uncached",
        "one uncached epoch: plain Keras' pipeline, tlcli's, and tlcli's fit",
    ),
    "backup": ("backup", "the per-epoch backup against Keras' save_weights / load_weights"),
    "sweep-cost": ("sweep_cost", "a head-only sweep against one `tlcli finetune`"),
    "sweep-workers": (
        "sweep_workers",
        "trials per minute of one sweep shared by 1, 2, 3 workers through PostgreSQL",
    ),
    "lr-find": ("lr_find", "lr-find's suggestion against the best of a grid of rates"),
    "export-quality": (
        "export_quality",
        "every export format and quantize mode against the Keras model",
    ),
    "onnx": ("onnx", "ONNX export: size, self-check, conversion time, ONNX Runtime speed"),
    "doctor-faults": (
        "doctor_faults",
        "tlcli doctor on planted near-copies, flipped labels and foreign images",
    ),
    "doctor-outliers": ("doctor_outliers", "tlcli doctor's outlier check on planted non-photos"),
}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="tlcli's benchmark suites. Each writes benchmarks/results/<suite>/"
        "<date>-<commit>.json; `report` renders the newest into docs/benchmarks.md.",
    )
    commands = top.add_subparsers(dest="suite", metavar="SUITE", required=True)
    for name, (_, summary) in SUITES.items():
        commands.add_parser(name, help=summary, add_help=False)
    commands.add_parser("report", help="render the newest results into docs/benchmarks.md")
    return top


def suite_parser(name: str, module) -> argparse.ArgumentParser:
    suite = argparse.ArgumentParser(
        prog=f"python -m benchmarks {name}", description=(module.__doc__ or "").split("\n\n")[0]
    )
    module.add_arguments(suite)
    common = suite.add_argument_group("every suite")
    common.add_argument(
        "--synthetic",
        action="store_true",
        help="run on images the suite makes itself (no ../shared needed)",
    )
    common.add_argument(
        "--results", type=Path, default=RESULTS, metavar="DIR", help="where result files go"
    )
    common.add_argument("--no-record", action="store_true", help="print only; write no file")
    return suite


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in [*SUITES, "report"]:
        parser().parse_args(argv)  # prints the suites, or the error, and exits
    name, rest = argv[0], argv[1:]
    if name == "report":
        from benchmarks import report

        return report.main(rest)
    module = importlib.import_module(f"benchmarks.{SUITES[name][0]}")
    args = suite_parser(name, module).parse_args(rest)
    try:
        results = module.run(args)
    except BenchError as error:
        note(f"failed: {error}")
        return 1
    except BenchSkip as reason:
        note(f"skipped: {reason}")
        return 0
    record = {
        "suite": name,
        "label": module.label(args),
        "synthetic": args.synthetic,
        "environment": environment(),
        "command": shlex.join(["python", "-m", "benchmarks", *argv]),
        "settings": {
            key: value for key, value in vars(args).items() if key not in ("results", "no_record")
        },
        "results": results,
    }
    if not args.no_record:
        note(f"result: {write_result(name, record, args.results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
