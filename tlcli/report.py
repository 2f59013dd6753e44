"""Classification metrics and the plots of a run: curves.png and confusion_matrix.png.

>>> m = classification_metrics(np.array([0, 1, 1]), np.array([0, 1, 0]), ["a", "b"])
>>> m["accuracy"], m["confusion_matrix"]
(0.6667, [[1, 0], [1, 1]])
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from tlcli.rundir import atomic_path


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict:
    """Accuracy; precision, recall, F1 per class, macro- and support-weighted averages."""
    n = len(labels)
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    true_pos = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0)
    support = matrix.sum(axis=1)
    precision = np.divide(true_pos, predicted, out=np.zeros(n), where=predicted > 0)
    recall = np.divide(true_pos, support, out=np.zeros(n), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(n), where=denom > 0)
    weights = support / max(support.sum(), 1)
    return {
        "accuracy": _round(true_pos.sum() / max(len(y_true), 1)),
        "precision_macro": _round(precision.mean()),
        "recall_macro": _round(recall.mean()),
        "f1_macro": _round(f1.mean()),
        "precision_weighted": _round((precision * weights).sum()),
        "recall_weighted": _round((recall * weights).sum()),
        "f1_weighted": _round((f1 * weights).sum()),
        "per_class": {
            label: {
                "precision": _round(precision[i]),
                "recall": _round(recall[i]),
                "f1": _round(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": matrix.tolist(),
        "labels": list(labels),
        "images": len(y_true),
    }


def metrics_rows(metrics: dict) -> list[list[str]]:
    """Rows of the terminal table: one per class, then the averages."""
    rows = [
        [label, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(m["support"])]
        for label, m in metrics["per_class"].items()
    ]
    total = str(sum(m["support"] for m in metrics["per_class"].values()))
    for kind in ("macro", "weighted"):
        rows.append(
            [
                f"({kind} avg)",
                f"{metrics[f'precision_{kind}']:.3f}",
                f"{metrics[f'recall_{kind}']:.3f}",
                f"{metrics[f'f1_{kind}']:.3f}",
                total,
            ]
        )
    return rows


def plot_curves(history_csv: Path, target: Path, title: str) -> None:
    """Loss and accuracy per epoch, train and validation, from history.csv."""
    if not history_csv.is_file():
        return
    with history_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return
    plt = _pyplot()
    epochs = [int(r["epoch"]) + 1 for r in rows]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for prefix, style in (("", "-o"), ("val_", "--o")):
            key = prefix + metric
            if key in rows[0]:
                axis.plot(epochs, [float(r[key]) for r in rows], style, label=key, markersize=3)
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    _save(figure, target)


def plot_confusion(metrics: dict, target: Path, title: str) -> None:
    plt = _pyplot()
    matrix = np.asarray(metrics["confusion_matrix"])
    labels = metrics["labels"]
    size = max(4.0, 0.6 * len(labels) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(matrix, cmap="Blues")
    axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axis.set_yticks(range(len(labels)), labels)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title)
    limit = matrix.max() / 2 if matrix.size else 0
    for (row, col), value in np.ndenumerate(matrix):
        color = "white" if value > limit else "black"
        axis.text(col, row, str(value), ha="center", va="center", color=color)
    figure.tight_layout()
    _save(figure, target)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, target: Path) -> None:
    with atomic_path(target) as tmp:
        figure.savefig(tmp, dpi=100)
    _pyplot().close(figure)


def _round(value: float) -> float:
    return round(float(value), 4)
