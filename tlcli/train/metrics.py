"""Classification metrics: accuracy, precision, recall, F1 per class and averaged, confusion;
and how well the probabilities are calibrated (expected calibration error, log loss).

>>> m = classification_metrics(np.array([0, 1, 1]), np.array([0, 1, 0]), ["a", "b"])
>>> m["accuracy"], m["confusion_matrix"]
(0.6667, [[1, 0], [1, 1]])
>>> calibration_metrics(np.array([0, 1]), np.array([[0.9, 0.1], [0.3, 0.7]]))
{'ece': 0.2, 'nll': 0.231, 'bins': 15}
"""

from __future__ import annotations

import numpy as np


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


# Equal-width confidence bins for the expected calibration error, as in Guo et al. 2017, "On
# Calibration of Modern Neural Networks" (https://arxiv.org/abs/1706.04599), which used 15.
ECE_BINS = 15


def confidence_bins(confidence: np.ndarray, bins: int = ECE_BINS) -> np.ndarray:
    """The equal-width bin of each top-1 confidence: bin b holds (b/bins, (b+1)/bins], and a
    confidence of exactly 0 joins bin 0.

    >>> confidence_bins(np.array([0.0, 0.5, 0.51, 1.0]), bins=2).tolist()
    [0, 0, 1, 1]
    """
    return np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)


def calibration_metrics(
    y_true: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS
) -> dict:
    """Expected calibration error (top-1 confidence against accuracy, over equal-width bins,
    weighted by the images in each) and the mean negative log-likelihood of the true class."""
    probabilities = np.asarray(probabilities, np.float64)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == y_true
    which = confidence_bins(confidence, bins)
    gap = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            gap += members.sum() * abs(correct[members].mean() - confidence[members].mean())
    true_p = probabilities[np.arange(len(y_true)), y_true]
    nll = -np.log(np.clip(true_p, np.finfo(np.float32).tiny, 1.0)).mean()
    return {"ece": _round(gap / max(len(y_true), 1)), "nll": round(float(nll), 4), "bins": bins}


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


def _round(value: float) -> float:
    return round(float(value), 4)
