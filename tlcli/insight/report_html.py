"""report.html in the run folder: one page with everything a run found out about its model and data.

Per target stage: the metrics with the per-class table, the curves, the confusion matrix, the
reliability diagram and calibration, the most-confused pairs and the gallery of errors; then the
data (images per split, skipped and converted files) and the doctor's findings. A stage that was
trained but not evaluated says how to evaluate it.

The page is self-contained: styles inline, every picture inlined as a data URI, no script, no
network, so it opens from the run folder (or an e-mail attachment) in any browser. It is at most
1,100 pixels wide, for a laptop screen. The only links are to the CSV files beside it.

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> write_report_page(folder).name
'report.html'
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np

from tlcli.files import write_text
from tlcli.insight.errors_report import confused_pairs
from tlcli.insight.model_card import training_lines
from tlcli.insight.run_facts import RunFacts, StageFacts, read_run
from tlcli.rundir import (
    CONFIG_FILE,
    CONFUSION_PLOT,
    CURVES_PLOT,
    DOCTOR_CSV,
    DOCTOR_DIR,
    ERRORS_CSV,
    ERRORS_GALLERY,
    RELIABILITY_PLOT,
    REPORT_PAGE,
)

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       max-width: 1100px; margin: 0 auto; padding: 0 16px 40px; }
h1 { font-size: 22px; margin: 18px 0 4px; } h2 { font-size: 18px; margin-top: 28px;
     border-bottom: 1px solid #ddd; } h3 { font-size: 15px; margin-bottom: 6px; }
table { border-collapse: collapse; margin: 6px 0 12px; } td, th { padding: 2px 10px;
        border-bottom: 1px solid #eee; text-align: right; } th { background: #f5f5f5; }
td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
.row { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.row figure { margin: 0; flex: 1 1 320px; } figcaption { color: #666; font-size: 12px; }
.note { color: #666; } code { background: #f3f3f3; padding: 0 3px; }
"""


def write_report_page(run_path: Path) -> Path:
    target = run_path / REPORT_PAGE
    write_text(target, report_page(read_run(run_path)))
    return target


def report_page(facts: RunFacts) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(facts.name)}: tlcli report</title><style>{STYLE}</style></head><body>",
        f"<h1>{_e(facts.name)}</h1>",
        f'<p class="note">{_e(str(facts.path))} · '
        + _e(", ".join(f"{k} {v}" for k, v in facts.versions.items() if k != "platform"))
        + "</p>",
        _summary(facts),
        *(_stage(facts, stage) for stage in facts.target_stages()),
        _data(facts),
        _doctor(facts),
        "</body></html>",
    ]
    return "\n".join(part for part in parts if part)


def _summary(facts: RunFacts) -> str:
    stages = facts.target_stages()
    if not stages:
        return '<p class="note">No trained finetune or unfreeze stage in this run yet.</p>'
    rows = []
    for stage in stages:
        m = stage.metrics
        if m is None:
            rows.append([stage.name, "not evaluated", "", "", "", ""])
            continue
        rows.append(
            [
                stage.name,
                f"{m['split']} ({m['images']})",
                f"{m['accuracy']:.3f}",
                f"{m['f1_macro']:.3f}",
                f"{m.get('calibration', {}).get('ece', float('nan')):.3f}",
                f"{stage.temperature:.3f}" if stage.calibration else "-",
            ]
        )
    return _table(["stage", "split (images)", "accuracy", "macro F1", "ECE", "temperature"], rows)


def _stage(facts: RunFacts, stage: StageFacts) -> str:
    folder = stage.folder
    head = f'<h2 id="{stage.name}">{stage.name}</h2>' + _how_trained(facts, stage)
    curves = _figure(folder / CURVES_PLOT, _curves_caption(stage))
    if stage.metrics is None:
        config = facts.path / CONFIG_FILE
        return (
            f"{head}<p>Trained, not evaluated yet: <code>tlcli evaluate {_e(str(config))} "
            f"--stage {stage.name}</code> (from Python: <code>tlcli.api.evaluate(cfg, "
            f"'{stage.name}')</code>).</p>{curves}"
        )
    m = stage.metrics
    per_class = _table(
        ["class", "precision", "recall", "F1", "images"],
        [
            [c, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", str(v["support"])]
            for c, v in m["per_class"].items()
        ],
    )
    pairs = confused_pairs(np.asarray(m["confusion_matrix"]), m["labels"])
    pairs_table = (
        _table(
            ["true", "predicted as", "images", "share of true"],
            [[t, p, str(n), f"{share:.0%}"] for t, p, n, share in pairs],
        )
        if pairs
        else "<p>No mistakes.</p>"
    )
    errors_link = (
        f'<a href="{_e(folder.name)}/{ERRORS_CSV}">{folder.name}/{ERRORS_CSV}</a>'
        if (folder / ERRORS_CSV).is_file()
        else ""
    )
    return "\n".join(
        [
            head,
            f"<p>On the {m['split']} split ({m['images']} images): accuracy "
            f"<b>{m['accuracy']:.3f}</b>, macro F1 <b>{m['f1_macro']:.3f}</b>, weighted F1 "
            f"{m['f1_weighted']:.3f}.</p>",
            f'<div class="row"><div>{per_class}</div>'
            + _figure(folder / CONFUSION_PLOT, "confusion matrix")
            + "</div>",
            f'<div class="row">{curves}'
            + _figure(folder / RELIABILITY_PLOT, _calibration_text(stage))
            + "</div>",
            f"<h3>Most confused</h3>{pairs_table}",
            f"<h3>Mistakes, most confident first</h3><p>Every one in {errors_link}.</p>"
            + _figure(folder / ERRORS_GALLERY, ""),
        ]
    )


def _how_trained(facts: RunFacts, stage: StageFacts) -> str:
    items = "".join(f"<li>{_e(line)}</li>" for line in training_lines(facts, stage))
    return f"<ul>{items}</ul>"


def _curves_caption(stage: StageFacts) -> str:
    if "search" in stage.state:
        return "head search: cross-validated accuracy of each candidate head"
    return "loss and accuracy per epoch"


def _calibration_text(stage: StageFacts) -> str:
    calibration = (stage.metrics or {}).get("calibration")
    if not calibration:
        return "reliability diagram"
    text = (
        f"ECE {calibration['ece']:.3f} over {calibration['bins']} bins, "
        f"log loss {calibration['nll']:.3f}"
    )
    if stage.calibration:
        c = stage.calibration
        text += (
            f"; temperature-scaled, T = {c['temperature']:.3f} (val ECE {c['before']['ece']:.3f}"
            f" -> {c['after']['ece']:.3f})"
        )
    return text


def _data(facts: RunFacts) -> str:
    report = facts.data_report
    if not report:
        return ""
    classes, splits = report.get("classes", []), report.get("splits", {})
    counts = _table(
        ["class", *splits],
        [[c, *(str(s["counts"].get(c, 0)) for s in splits.values())] for c in classes]
        + [["all", *(str(s["images"]) for s in splits.values())]],
    )
    problems = [[p["path"], f"skipped: {p['reason']}"] for p in report.get("skipped", [])] + [
        [p["path"], "converted: " + "; ".join(p["notes"])] for p in report.get("converted", [])
    ]
    listed = (
        _table(["file", "what"], problems[:50]) if problems else "<p>None skipped or converted.</p>"
    )
    warnings = "".join(f"<li>{_e(w)}</li>" for w in report.get("warnings", []))
    return (
        f'<h2 id="data">Data</h2>{counts}'
        + (f"<ul>{warnings}</ul>" if warnings else "")
        + f"<h3>Files skipped or converted ({len(problems)})</h3>{listed}"
    )


def _doctor(facts: RunFacts) -> str:
    doctor = facts.doctor
    head = '<h2 id="doctor">Data doctor</h2>'
    if doctor is None:
        return (
            f"{head}<p>Not run. <code>tlcli doctor CONFIG</code> looks for near-duplicates "
            "(within and across splits), likely label errors and outliers.</p>"
        )
    folder = facts.path / DOCTOR_DIR
    rows = [[kind, str(n)] for kind, n in doctor.get("counts", {}).items()]
    notes = "".join(f"<li>{_e(n)}</li>" for n in doctor.get("notes", []))
    sheets = "".join(
        _figure(folder / sheet, title) for title, sheet in doctor.get("sheets", {}).items()
    )
    link = f'<a href="{DOCTOR_DIR}/{DOCTOR_CSV}">{DOCTOR_DIR}/{DOCTOR_CSV}</a>'
    return (
        f"{head}<p>{doctor.get('images', '?')} images checked; every finding in {link}.</p>"
        + _table(["finding", "images or pairs"], rows)
        + (f"<ul>{notes}</ul>" if notes else "")
        + sheets
    )


def _figure(path: Path, caption: str) -> str:
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{_e(caption or path.name)}" src="data:image/png;base64,{data}">'
        + (f"<figcaption>{_e(caption)}</figcaption>" if caption else "")
        + "</figure>"
    )


def _table(columns: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _e(text: str) -> str:
    return html.escape(str(text))
