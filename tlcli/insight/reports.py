"""Every report of an evaluation, in one call: the error report, the reliability diagram, the
model card, and the run's report page.

    write_reports(run_dir)     draw them from the run folder
    refresh_pages(run_dir)     model cards and report.html only (doctor)

`tlcli.api.run` and `tlcli.api.evaluate` call these after evaluating; `tlcli report RUN_DIR`
redraws them (no model is loaded: each evaluation saved its predictions beside metrics.json).
"""

from __future__ import annotations

from pathlib import Path

from tlcli.console import Console
from tlcli.insight.calibration import plot_reliability
from tlcli.insight.errors_report import write_error_report
from tlcli.insight.model_card import write_model_card
from tlcli.insight.report_html import write_report_page
from tlcli.insight.run_facts import read_run
from tlcli.rundir import MODEL_CARD, RELIABILITY_PLOT, REPORT_PAGE, TARGET_STAGES
from tlcli.runtime.distribute import is_chief
from tlcli.train.evaluate import load_evaluation


def write_reports(
    run_dir: Path, stages: list[str] | None = None, console: Console | None = None
) -> Path:
    """Error report, reliability diagram and model card of each evaluated target stage in
    `stages` (default: all), then report.html; returns the page's path."""
    console = console or Console()
    if not is_chief():
        return run_dir / REPORT_PAGE
    facts = read_run(run_dir)
    for name in stages or TARGET_STAGES:
        evaluation = load_evaluation(run_dir / name)
        if evaluation is None or name not in facts.stages:
            continue
        title = f"{facts.name}: {name} on {evaluation.split}"
        write_error_report(evaluation, console, title)
        plot_reliability(
            evaluation.labels, evaluation.probabilities, evaluation.file(RELIABILITY_PLOT), title
        )
        write_model_card(facts, facts.stages[name])
    page = write_report_page(run_dir)
    cards = [
        str(run_dir / s / MODEL_CARD) for s in facts.stages if (run_dir / s / MODEL_CARD).is_file()
    ]
    console.info(f"report: {page}" + (f"; model card: {', '.join(cards)}" if cards else ""))
    return page


def refresh_pages(run_dir: Path) -> Path:
    """Rewrite the model card of every evaluated stage and report.html from the run folder, for
    what changes them without a new evaluation (the doctor's findings); returns the page."""
    if not is_chief():
        return run_dir / REPORT_PAGE
    facts = read_run(run_dir)
    for stage in facts.target_stages():
        if stage.metrics is not None:
            write_model_card(facts, stage)
    return write_report_page(run_dir)
