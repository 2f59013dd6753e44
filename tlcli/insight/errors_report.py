"""Which images does the model get wrong, and which classes does it mix up? From an evaluation.

    errors.csv   every misclassified image, most confident mistakes first: file, true label,
                 predicted label, confidence, the true label's probability, the top-k labels
    errors.png   a gallery of the first 48, captioned with file name, true -> predicted and
                 confidence

The most-confused pairs (true class -> predicted class, images, share of the true class) go to
the console, the report page and the model card.

>>> matrix = np.array([[8, 2, 0], [5, 4, 1], [0, 0, 9]])
>>> confused_pairs(matrix, ["shirt", "t-shirt", "hat"])
[('t-shirt', 'shirt', 5, 0.5), ('shirt', 't-shirt', 2, 0.2), ('t-shirt', 'hat', 1, 0.1)]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tlcli.console import Console
from tlcli.files import write_csv_rows
from tlcli.insight.contact_sheet import MAX_TILES, Tile, draw_contact_sheet
from tlcli.rundir import ERRORS_CSV, ERRORS_GALLERY

if TYPE_CHECKING:
    from tlcli.train.evaluate import Evaluation

TOP_K = 3
COLUMNS = ["file", "true_label", "predicted_label", "confidence", "true_label_probability",
           "top_k"]  # fmt: skip


@dataclass
class ErrorReport:
    errors: int
    images: int
    pairs: list[tuple[str, str, int, float]]  # (true, predicted, images, share of true class)


def confused_pairs(
    matrix: np.ndarray, classes: list[str], limit: int = 5
) -> list[tuple[str, str, int, float]]:
    """The off-diagonal cells of a confusion matrix, largest first (ties: by share)."""
    matrix = np.asarray(matrix)
    support = matrix.sum(axis=1)
    cells = [
        (classes[t], classes[p], int(matrix[t, p]), round(float(matrix[t, p] / support[t]), 4))
        for t in range(len(classes))
        for p in range(len(classes))
        if t != p and matrix[t, p] > 0
    ]
    return sorted(cells, key=lambda cell: (-cell[2], -cell[3]))[:limit]


def error_rows(evaluation: Evaluation, top_k: int = TOP_K) -> list[dict]:
    """One row per misclassified image, the most confident mistakes first."""
    probabilities, labels, classes = evaluation.probabilities, evaluation.labels, evaluation.classes
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    wrong = wrong[np.argsort(-probabilities[wrong, predicted[wrong]], kind="stable")]
    rows = []
    for i in wrong:
        best = np.argsort(-probabilities[i])[:top_k]
        rows.append(
            {
                "file": str(evaluation.paths[i]),
                "true_label": classes[labels[i]],
                "predicted_label": classes[predicted[i]],
                "confidence": round(float(probabilities[i, predicted[i]]), 4),
                "true_label_probability": round(float(probabilities[i, labels[i]]), 4),
                "top_k": "; ".join(f"{classes[c]} {probabilities[i, c]:.3f}" for c in best),
            }
        )
    return rows


def write_error_report(evaluation: Evaluation, console: Console, title: str) -> ErrorReport:
    """errors.csv and errors.png for `evaluation`; the most-confused pairs on the console."""
    rows = error_rows(evaluation)
    write_csv_rows(evaluation.file(ERRORS_CSV), rows, COLUMNS)
    shown = min(len(rows), MAX_TILES)
    heading = f"{title}: {len(rows)} of {len(evaluation.labels)} images misclassified" + (
        f" (the {shown} most confident shown; all in {ERRORS_CSV})" if len(rows) > shown else ""
    )
    tiles = [
        Tile(
            [Path(row["file"])],
            [
                _name(row["file"]),
                f"true {row['true_label']}",
                f"pred {row['predicted_label']} {row['confidence']:.2f}",
            ],
        )
        for row in rows
    ]
    draw_contact_sheet(tiles, evaluation.file(ERRORS_GALLERY), heading)
    pairs = confused_pairs(np.asarray(evaluation.metrics["confusion_matrix"]), evaluation.classes)
    if pairs:
        console.table(
            f"most confused ({len(rows)} errors: {evaluation.file(ERRORS_CSV)})",
            ["true", "predicted as", "images", "share of true"],
            [[t, p, str(n), f"{share:.0%}"] for t, p, n, share in pairs],
        )
    return ErrorReport(len(rows), len(evaluation.labels), pairs)


def _name(path: str) -> str:
    """The parent folder and file name: enough to find it, short enough for a caption."""
    parts = path.replace("\\", "/").split("/")
    return "/".join(parts[-2:])
