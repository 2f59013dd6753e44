"""`tlcli doctor`: is the data clean? Near-duplicates, likely label errors, outliers, broken files.

It trains no network: it reads the target data (the run's decoded-image cache), takes the
frozen base's features of every image (the run's feature cache, shared with finetune), and
runs three checks on them (duplicates.py, label_issues.py, outliers.py). A duplicate pair whose
two files carry different labels is a label conflict (the same image, two labels), reported
apart from the plain duplicates. It writes, in `<run>/doctor/`:

    doctor.csv        file, split, label, issue, score, other (the other file, or the suggested
                      label), note; one row per finding, the most certain first
    duplicates.png    contact sheets, one per kind of finding, file names under each thumbnail
    conflicts.png
    label_issues.png
    outliers.png
    summary.json      counts per kind, what could not be checked and why

and redraws the run's report.html with the findings. Unreadable files are listed (as preflight
does) and left out of the checks. A dataset too small for a check (one class, one image in a
class) gets a note saying what was not computed, and the rest of the report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tlcli.config import Config
from tlcli.console import Console
from tlcli.errors import ConfigError
from tlcli.files import write_csv_rows, write_json
from tlcli.insight.contact_sheet import Tile, draw_contact_sheet
from tlcli.insight.duplicates import DUPLICATE_THRESHOLD, aligned_similarity, candidate_pairs
from tlcli.insight.features import target_features
from tlcli.insight.label_issues import MAX_LABEL_PROBABILITY, find_label_issues
from tlcli.insight.outliers import LIMIT, NEIGHBOURS, find_outliers
from tlcli.insight.reports import refresh_pages
from tlcli.rundir import DOCTOR_CSV, DOCTOR_DIR, DOCTOR_SHEETS, DOCTOR_SUMMARY, RunDir

COLUMNS = ["file", "split", "label", "issue", "score", "other", "note"]
SHEETS = DOCTOR_SHEETS


@dataclass
class DoctorFindings:
    folder: Path
    rows: list[dict]
    counts: dict[str, int]
    notes: list[str]

    @property
    def cross_split_duplicates(self) -> int:
        return self.counts.get("cross-split duplicate", 0)


def run_doctor(cfg: Config, console: Console | None = None) -> DoctorFindings:
    """Check the target data of `cfg`; write doctor.csv, the sheets and summary.json."""
    _require_extra()
    console = console or Console()
    run = RunDir(cfg.run_dir)
    console.banner("doctor", f"{cfg.model.base} features of {cfg.data.train_dir} and its splits")
    found = target_features(cfg, run, console)
    started = time.perf_counter()
    images = [found.pixels(i) for i in range(len(found))]
    pairs = candidate_pairs(found.features, images)
    scores = aligned_similarity(images, pairs)
    keep = scores >= DUPLICATE_THRESHOLD
    duplicates = (pairs[keep][np.argsort(-scores[keep])], np.sort(scores[keep])[::-1])
    labels = find_label_issues(found.features, found.labels, found.classes, cfg.seed)
    outliers = find_outliers(found.features)
    rows = (
        _duplicate_rows(found, *duplicates)
        + _conflict_rows(found, *duplicates)
        + _label_rows(found, labels)
        + _outlier_rows(found, outliers)
        + _unreadable_rows(found.data.report)
    )
    notes = list(labels.notes)
    if len(found) < 2:
        notes.append("fewer than 2 readable images: duplicates and outliers not checked")
    folder = run.path / DOCTOR_DIR
    findings = DoctorFindings(folder, rows, _counts(rows), notes)
    _write(findings, found, time.perf_counter() - started, cfg)
    refresh_pages(run.path)
    _print(findings, console)
    return findings


def _require_extra() -> None:
    try:  # the optional `doctor` extra, checked before any work
        import cleanlab  # noqa: F401
        import scipy  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError:
        raise ConfigError(
            "the data doctor needs cleanlab and scikit-learn: pip install 'tlcli[doctor]'"
        ) from None


def _duplicate_rows(found, pairs: np.ndarray, scores: np.ndarray) -> list[dict]:
    """The pairs whose two files carry the same label."""
    same = found.labels[pairs[:, 0]] == found.labels[pairs[:, 1]] if len(pairs) else []
    return [
        _row(found, i, "near-duplicate", score, str(found.paths[j]), _where(found, i, j))
        for (i, j), score in zip(pairs[same], scores[same], strict=True)
    ]


def _conflict_rows(found, pairs: np.ndarray, scores: np.ndarray) -> list[dict]:
    """The pairs whose two files carry different labels: one image, two labels."""
    differ = found.labels[pairs[:, 0]] != found.labels[pairs[:, 1]] if len(pairs) else []
    return [
        _row(found, i, "label conflict", score, str(found.paths[j]),
             f"the same image labelled {found.classes[found.labels[j]]}, {_where(found, i, j)}")
        for (i, j), score in zip(pairs[differ], scores[differ], strict=True)
    ]  # fmt: skip


def _where(found, i: int, j: int) -> str:
    a, b = found.split_names[i], found.split_names[j]
    return f"across splits ({a}, {b})" if a != b else f"within {a}"


def _label_rows(found, issues) -> list[dict]:
    return [
        _row(found, i, "label", 1 - p, found.classes[s], f"given label's probability {p:.3f}")
        for i, s, p in zip(issues.rows, issues.suggested, issues.given_probability, strict=True)
    ]


def _outlier_rows(found, outliers) -> list[dict]:
    notes = {
        "far": lambda d, n: (
            f"far from every other image: mean distance {d:.3f} to the "
            f"{NEIGHBOURS} nearest (median {outliers.typical_distance:.3f})"
        ),
        "empty": lambda d, n: (
            f"the base barely responds (a blank or empty frame?): feature "
            f"norm {n:.1f} (median {outliers.typical_norm:.1f})"
        ),
    }
    return [
        _row(found, i, "outlier", z, "", notes[reason](d, n))
        for i, z, reason, d, n in zip(
            outliers.rows, outliers.score, outliers.reasons, outliers.distance, outliers.norm,
            strict=True,
        )
    ]  # fmt: skip


def _unreadable_rows(report: dict) -> list[dict]:
    return [
        {"file": s["path"], "split": "", "label": "", "issue": "unreadable", "score": "",
         "other": "", "note": s["reason"]}
        for s in report.get("skipped", [])
    ]  # fmt: skip


def _row(found, index: int, issue: str, score: float, other: str, note: str) -> dict:
    return {
        "file": str(found.paths[index]),
        "split": str(found.split_names[index]),
        "label": found.classes[found.labels[index]],
        "issue": issue,
        "score": round(float(score), 4),
        "other": other,
        "note": note,
    }


def _counts(rows: list[dict]) -> dict[str, int]:
    kinds = [r["issue"] for r in rows]
    return {
        "near-duplicate": kinds.count("near-duplicate"),
        "label conflict": kinds.count("label conflict"),
        # either kind of pair: the same image on both sides of a split
        "cross-split duplicate": sum("across splits" in r["note"] for r in rows),
        "label": kinds.count("label"),
        "outlier": kinds.count("outlier"),
        "unreadable": kinds.count("unreadable"),
    }


def _write(findings: DoctorFindings, found, seconds: float, cfg: Config) -> None:
    folder = findings.folder
    write_csv_rows(folder / DOCTOR_CSV, findings.rows, COLUMNS)
    kinds = {"near-duplicates": "near-duplicate", "label conflicts": "label conflict",
             "likely label errors": "label", "outliers": "outlier"}  # fmt: skip
    sheets = {}
    for title, sheet in SHEETS.items():
        chosen = [r for r in findings.rows if r["issue"] == kinds[title]]
        if chosen:
            draw_contact_sheet([_tile(r) for r in chosen], folder / sheet,
                               f"{cfg.name}: {len(chosen)} {title}")  # fmt: skip
            sheets[title] = sheet
        else:
            (folder / sheet).unlink(missing_ok=True)
    write_json(
        folder / DOCTOR_SUMMARY,
        {
            "images": len(found),
            "classes": found.classes,
            "counts": findings.counts,
            "notes": findings.notes,
            "sheets": sheets,
            "limits": {
                "duplicate_similarity": DUPLICATE_THRESHOLD,
                "label_probability": MAX_LABEL_PROBABILITY,
                "outlier_mad": LIMIT,
            },
            "features_reused": found.reused,
            "seconds": {**found.seconds, "checks": round(seconds, 2)},
        },
    )


def _tile(row: dict) -> Tile:
    name = "/".join(Path(row["file"]).parts[-2:])
    if row["issue"] == "near-duplicate":
        other = "/".join(Path(row["other"]).parts[-2:])
        return Tile([Path(row["file"]), Path(row["other"])],
                    [name, other, f"{row['note']}, {row['score']:.3f}"])  # fmt: skip
    if row["issue"] == "label conflict":
        other = "/".join(Path(row["other"]).parts[-2:])
        return Tile([Path(row["file"]), Path(row["other"])], [name, other, row["note"]])
    if row["issue"] == "label":
        return Tile([Path(row["file"])], [name, f"{row['label']} -> {row['other']}?"])
    return Tile([Path(row["file"])], [name, f"{row['label']}, {row['score']:.3f}"])


def _print(findings: DoctorFindings, console: Console) -> None:
    counts = findings.counts
    console.table(
        f"doctor: {findings.folder / DOCTOR_CSV}",
        ["finding", "count"],
        [
            ["near-duplicate pairs", str(counts["near-duplicate"])],
            ["same image, two labels", str(counts["label conflict"])],
            ["  pairs across splits", str(counts["cross-split duplicate"])],
            ["likely label errors", str(counts["label"])],
            ["outliers", str(counts["outlier"])],
            ["unreadable files", str(counts["unreadable"])],
        ],
    )
    for note in findings.notes:
        console.warn(note)
    if counts["label conflict"]:
        console.result(
            f"{counts['label conflict']} image(s) filed under two labels (label conflicts in "
            "doctor.csv): each needs one label",
            tone="bad",
        )
    if counts["cross-split duplicate"]:
        console.result(
            f"{counts['cross-split duplicate']} near-duplicate pair(s) across splits: "
            "held-out scores may be inflated",
            tone="bad",
        )
