"""Turn the transfer suite's measurements into the table it prints.

Works on the results dict alone (the `results` of a transfer result file), so a table can be
printed again, or compared, without rerunning anything. What each row means is explained in
transfer.py's docstring. A result of `--repeat N` (N > 1: it has "repeats") gets the table of
medians over its N pairs.
"""

from __future__ import annotations

import statistics
from pathlib import Path

STAGES = ("finetune", "unfreeze")
STAGE_COLUMNS = ("wall", "start-up", "before", "data", "cache", "other", "fit", "after fit")
ROWS = [  # (summary key, label, unit); accuracies have no unit
    ("finetune_startup", "finetune start-up (to its 1st batch)", "s"),
    ("finetune_stage", "finetune stage (after its start-up)", "s"),
    ("finetune_wall", "finetune wall", "s"),
    ("unfreeze_startup", "unfreeze start-up (to its 1st batch)", "s"),
    ("unfreeze_stage", "unfreeze stage (after its start-up)", "s"),
    ("unfreeze_wall", "unfreeze wall", "s"),
    ("evaluate", "evaluate (after each stage)", "s"),
    ("whole", "whole process (all stages + evaluate)", "s"),
    ("exit", "  of which process exit", "s"),
    ("val_finetune", "val accuracy after finetune", ""),
    ("val_unfreeze", "val accuracy after unfreeze", ""),
    ("test_finetune", "test accuracy after finetune", ""),
    ("test_unfreeze", "test accuracy after unfreeze", ""),
    ("peak_rss_mb", "peak RSS of the process", "MB"),
]


# ---------------------------------------------------------------------------------- summaries


def plain_summary(process: dict, result: dict) -> dict:
    """The table's numbers for plain Keras, from the timestamps its process wrote."""
    finetune, unfreeze = result["stages"]["finetune"], result["stages"]["unfreeze"]
    finetune_end = finetune.get("eval_end", finetune["fit_end"])  # unfreeze starts after it
    evals = [stage["eval_seconds"] for stage in (finetune, unfreeze) if "eval_seconds" in stage]
    return {
        "finetune_startup": finetune["first_batch_at"] - process["launch_at"],
        "finetune_stage": finetune["fit_seconds"],
        "finetune_wall": finetune["fit_end"] - process["launch_at"],
        "unfreeze_startup": unfreeze["first_batch_at"] - finetune_end,
        "unfreeze_stage": unfreeze["fit_seconds"],
        "unfreeze_wall": unfreeze["fit_end"] - finetune_end,
        "evaluate": sum(evals) if evals else None,
        "whole": process["seconds"],
        "exit": exit_seconds(process, result["end_at"]),
        "val_finetune": finetune["val_accuracy"],
        "val_unfreeze": unfreeze["val_accuracy"],
        "test_finetune": finetune.get("test_accuracy"),
        "test_unfreeze": unfreeze.get("test_accuracy"),
        "peak_rss_mb": process["max_rss_mb"],
    }


def tlcli_summary(tlcli: dict) -> dict:
    """The table's numbers for tlcli, from its process, stage.json and metrics.json files."""
    process, stages, metrics = tlcli["process"], tlcli["stages"], tlcli["metrics"]
    summary = {}
    stage_start = process["launch_at"]  # unfreeze's wall starts where finetune's ends
    for stage in STAGES:
        timings = stages[stage].get("timings", {})
        first_batch, finished = timings.get("first_batch_at"), timings.get("stage_finished_at")
        summary[f"{stage}_startup"] = between(stage_start, first_batch)
        summary[f"{stage}_stage"] = between(first_batch, finished)
        summary[f"{stage}_wall"] = between(stage_start, finished)
        summary[f"val_{stage}"] = stages[stage].get("final", {}).get("val_accuracy")
        stage_metrics = metrics.get(stage, {})
        tested = stage_metrics.get("split") == "test"  # without a test split, tlcli scores val
        summary[f"test_{stage}"] = stage_metrics.get("accuracy") if tested else None
        stage_start = finished
    evals = [m["seconds"] for m in metrics.values() if "seconds" in m]
    summary["evaluate"] = sum(evals) if evals else None
    summary["whole"] = process["seconds"]
    summary["exit"] = exit_seconds(process, tlcli.get("last_write_at"))
    summary["peak_rss_mb"] = process["max_rss_mb"]
    return summary


def between(start: float | None, end: float | None) -> float | None:
    """end - start, or None when either clock is missing."""
    return None if start is None or end is None else end - start


def exit_seconds(process: dict, ended_at: float | None) -> float | None:
    """From the end of a process's work to its exit: interpreter and TensorFlow shutdown."""
    return None if ended_at is None else process["launch_at"] + process["seconds"] - ended_at


# -------------------------------------------------------------------------------------- table


def format_cell(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return {"s": f"{value:.1f}", "MB": f"{value:.0f}"}.get(unit, f"{value:.3f}")


def compare_value(plain: float | None, tlcli: float | None, unit: str) -> float | None:
    """plain/tlcli for costs (above 1: tlcli is faster); tlcli - plain for accuracies."""
    if plain is None or tlcli is None:
        return None
    if not unit:
        return tlcli - plain
    return plain / tlcli if tlcli > 0 else None


def format_compare(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}x" if unit else f"{value:+.3f}"


def compare_cell(plain: float | None, tlcli: float | None, unit: str) -> str:
    return format_compare(compare_value(plain, tlcli, unit), unit)


def aligned(rows: list[tuple[str, ...]], text_columns: tuple[int, ...] = (0,)) -> list[str]:
    """Monospace columns: text columns left-aligned, numbers right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(width) if i in text_columns else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def comparison_lines(plain: dict, tlcli: dict) -> list[str]:
    rows = [("", "unit", "plain Keras", "tlcli", "plain/tlcli")]
    for key, label, unit in ROWS:
        rows.append(
            (
                label,
                unit,
                format_cell(plain[key], unit),
                format_cell(tlcli[key], unit),
                compare_cell(plain[key], tlcli[key], unit),
            )
        )
    return aligned(rows)


# ----------------------------------------------------------------------------- repeated pairs


def median_of(values: list[float | None]) -> float | None:
    """The median of the values measured; None when no pair measured any."""
    known = [value for value in values if value is not None]
    return statistics.median(known) if known else None


def repeat_summary(pairs: list[dict]) -> dict:
    """Per table row: each tool's median over the pairs, and each pair's own comparison.

    "compare" is the median of the pairs' ratios, not the ratio of the two medians: the two
    runs of a pair ran back to back, so a slow spell of the machine hits both and cancels in
    their ratio, where it would not across pairs. Accuracies too are medians over the pairs.
    """
    rows = {}
    for key, _, unit in ROWS:
        plain = [pair["summary"]["plain"][key] for pair in pairs]
        tlcli = [pair["summary"]["tlcli"][key] for pair in pairs]
        each = [compare_value(p, t, unit) for p, t in zip(plain, tlcli, strict=True)]
        known = [value for value in each if value is not None]
        rows[key] = {
            "plain": median_of(plain),
            "tlcli": median_of(tlcli),
            "compare": median_of(each),
            "min": min(known, default=None),
            "max": max(known, default=None),
            "each": each,
        }
    return rows


def spread_cell(row: dict, unit: str) -> str:
    """'1.05x (0.98-1.12, 3 pairs)': the median comparison, its range and how many pairs."""
    pairs = sum(value is not None for value in row["each"])
    if not pairs:
        return "-"
    low, high = row["min"], row["max"]
    span = f"{low:.2f}-{high:.2f}" if unit else f"{low:+.3f} to {high:+.3f}"
    return f"{format_compare(row['compare'], unit)} ({span}, {pairs} pairs)"


def repeat_lines(results: dict) -> list[str]:
    """The comparison table over the repeated pairs: medians, range, every pair's ratio."""
    pairs = results["repeats"]
    summary = repeat_summary(pairs)
    rows = [("", "unit", "plain Keras", "tlcli", "plain/tlcli (min-max)", "each pair")]
    for key, label, unit in ROWS:
        row = summary[key]
        rows.append(
            (
                label,
                unit,
                format_cell(row["plain"], unit),
                format_cell(row["tlcli"], unit),
                spread_cell(row, unit),
                " ".join(format_compare(value, unit) for value in row["each"]),
            )
        )
    return [
        f"median of {len(pairs)} interleaved pairs (plain, tlcli, tlcli, plain, ...): each "
        "tool's median; plain/tlcli: the median of the pairs' own ratios (tlcli - plain for "
        "accuracies)",
        *aligned(rows, text_columns=(0, len(rows[0]) - 1)),
        "",
        f"below: pair 1 of {len(pairs)}; the floor and the TensorFlow import ran once",
    ]


# ------------------------------------------------------------------------------------ details


def stage_breakdown(timings: dict, origin: float | None) -> dict:
    """wall = start-up (before + data + cache + other) + fit + after fit, for one tlcli stage.

    `origin` is where the stage's wall starts: the launch of the process for finetune, the end
    of finetune for unfreeze. `before` runs from it to the stage's own clock (finetune: Python
    start, tlcli import, config; unfreeze: finishing finetune, checks); `other` is the rest of
    the start-up: TensorFlow import (finetune), building or loading the model.
    """
    parts = dict.fromkeys(STAGE_COLUMNS)
    first_batch, finished = timings.get("first_batch_at"), timings.get("stage_finished_at")
    if origin is None or first_batch is None or finished is None:
        return parts
    startup = first_batch - origin
    before = timings["stage_started_at"] - origin
    data, cache, fit = timings["data_seconds"], timings["cache_seconds"], timings["fit_seconds"]
    parts.update(
        {
            "wall": finished - origin,
            "start-up": startup,
            "before": before,
            "data": data,
            "cache": cache,
            "other": startup - before - data - cache,
            "fit": fit,
            "after fit": finished - first_batch - fit,
        }
    )
    return parts


def tlcli_stage_lines(tlcli: dict) -> list[str]:
    """Where tlcli's one process spends its time: stages, evaluations, the rest, exit.

    The walls add up to the whole process; "the rest" is what no clock covers (confusion
    matrix plots, printed tables).
    """
    process, stages, metrics = tlcli["process"], tlcli["stages"], tlcli["metrics"]
    blank = ("",) * (len(STAGE_COLUMNS) - 1)
    rows = [("tlcli run, one process (s)", *STAGE_COLUMNS, "feature cache")]
    origin, walls = process["launch_at"], []
    for stage in STAGES:
        timings = stages[stage].get("timings", {})
        parts = stage_breakdown(timings, origin)
        cells = (format_cell(value, "s") for value in parts.values())
        rows.append((f"  {stage}", *cells, cache_note(stages[stage])))
        origin = timings.get("stage_finished_at")
        walls.append(parts["wall"])
    for stage in STAGES:
        seconds = metrics.get(stage, {}).get("seconds")
        split = metrics.get(stage, {}).get("split", "?")
        rows.append((f"  evaluate {stage} ({split})", format_cell(seconds, "s"), *blank, ""))
        walls.append(seconds)
    exit_ = exit_seconds(process, tlcli.get("last_write_at"))
    rest = None if None in (*walls, exit_) else process["seconds"] - sum(walls) - exit_
    rows.append(("  the rest (plots, tables)", format_cell(rest, "s"), *blank, ""))
    rows.append(("  exit (after the last file)", format_cell(exit_, "s"), *blank, ""))
    rows.append(("  whole process", format_cell(process["seconds"], "s"), *blank, ""))
    return aligned(rows, text_columns=(0, len(rows[0]) - 1))


def cache_note(state: dict) -> str:
    cache = state.get("cache")
    if not cache:
        return ""
    if not cache.get("used"):
        # "feature cache off: <why> (<advice>)" -> "off: <why>"
        reason = cache.get("reason", "?").removeprefix("feature cache off: ").split(" (")[0]
        return f"off: {reason}"
    how = "reused" if cache.get("reused") else "built"
    return f"{how}, cut at {cache.get('cut')}, {cache.get('views')} view(s)"


def floor_lines(results: dict) -> list[str]:
    """The one-forward-pass floor, and how far each finetune stage is from it."""
    floor = results["floor"]["result"]
    forward = floor["forward_seconds"]
    tlcli, plain = results["summary"]["tlcli"], results["summary"]["plain"]
    cache = results["tlcli"]["stages"]["finetune"].get("timings", {}).get("cache_seconds")
    ratios = [
        ("tlcli finetune wall", tlcli["finetune_wall"]),
        ("tlcli finetune cache", cache),
        ("plain finetune stage", plain["finetune_stage"]),
    ]
    return [
        f"floor: one forward pass of {results['settings']['base']} over train + val "
        f"({floor['images']} images): {forward:.1f} s ({floor['images_per_second']:.0f} "
        f"images/s); before it, in its process: TensorFlow import {floor['import_seconds']:.1f} s"
        f", decode {floor['decode_seconds']:.1f} s, build {floor['build_seconds']:.1f} s, "
        f"warm-up {floor['warmup_seconds']:.1f} s",
        "  "
        + ", ".join(
            f"{label} / floor = {value / forward:.1f}x" for label, value in ratios if value
        ),
    ]


def process_lines(results: dict) -> list[str]:
    """TensorFlow import, epochs, memory per process, checks that both did the same job."""
    processes = [
        results["plain"]["process"],
        results["tlcli"]["process"],
        results["floor"]["process"],
        results["tf_import"],
    ]
    plain = results["plain"]["result"]
    tf_import = results["tf_import"]["seconds"]
    report = results["tlcli"]["data_report"].get("splits", {})
    tlcli_images = {name: split["images"] for name, split in report.items()}
    epochs = {
        stage: ", ".join(f"{s:.1f}" for s in plain["stages"][stage].get("epoch_seconds", []))
        for stage in STAGES
    }
    return [
        f'TensorFlow import alone (python -c "import tensorflow"): {tf_import:.1f} s; both '
        "tools pay it once, in their finetune start-up (tlcli: in its `other` above)",
        f"plain Keras epoch seconds: finetune [{epochs['finetune']}], "
        f"unfreeze [{epochs['unfreeze']}]",
        "peak RSS per process (MB): "
        + ", ".join(f"{p['name']} {p['max_rss_mb']:.0f}" for p in processes),
        f"images per split: plain Keras {plain['images']}, tlcli {tlcli_images}",
        "base layers with weights trained by unfreeze: "
        f"plain Keras {plain['trained_layers']}, tlcli {results['tlcli']['trained_layers']}",
    ]


def title(results: dict) -> str:
    settings = results["settings"]
    views = f"tlcli caches {settings['views']} views" if settings["views"] else "no cache"
    augment = f"flip+zoom ({views})" if settings["augment"] else "off"
    return (
        f"tlcli vs plain Keras: {settings['base']} ({Path(settings['weights']).name}), "
        f"{settings['image_size']} px, batch {settings['batch_size']}, "
        f"{settings['epochs']} + {settings['unfreeze_epochs']} epochs, augment {augment}, "
        f"data {results['data']}"
    )


def report(results: dict) -> str:
    """The whole printed report: the comparison table, then the details under it."""
    summary = results["summary"]
    table = (
        repeat_lines(results)
        if results.get("repeats")  # old results files and --repeat 1 have none
        else comparison_lines(summary["plain"], summary["tlcli"])
    )
    lines = [
        title(results),
        "",
        *table,
        "",
        *tlcli_stage_lines(results["tlcli"]),
        "",
        *floor_lines(results),
        *process_lines(results),
        f"command: {results.get('command', '-')}",
    ]
    return "\n".join(lines)
