"""The reliability diagram: is a confidence of 0.9 right 90% of the time?

Every evaluate measures calibration (`tlcli.train.metrics.calibration_metrics`) and saves its
predictions; this draws them as accuracy against confidence per bin. Fitting a temperature,
which rewrites the stage's model, is training's job (`tlcli.train.calibration`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tlcli.train.metrics import ECE_BINS
from tlcli.train.plots import pyplot, save_figure


def plot_reliability(labels: np.ndarray, probabilities: np.ndarray, target: Path, title: str):
    """Accuracy against confidence per bin, bars sized by how many images fall in each."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0, 1, ECE_BINS + 1)
    which = np.clip(np.ceil(confidence * ECE_BINS).astype(int) - 1, 0, ECE_BINS - 1)
    counts = np.bincount(which, minlength=ECE_BINS)
    accuracy = np.bincount(which, weights=correct, minlength=ECE_BINS) / np.maximum(counts, 1)
    plt = pyplot()
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(4.6, 5.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    width = 1 / ECE_BINS
    shown = counts > 0
    top.bar(edges[:-1][shown], accuracy[shown], width=width, align="edge", edgecolor="black",
            color="#4c72b0", label="accuracy")  # fmt: skip
    top.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    top.set_ylabel("accuracy")
    top.set_ylim(0, 1)
    top.legend(loc="upper left")
    top.set_title(title, fontsize=10)
    bottom.bar(edges[:-1], counts, width=width, align="edge", edgecolor="black", color="#999")
    bottom.set_xlabel("confidence (top-1 probability)")
    bottom.set_ylabel("images")
    bottom.set_xlim(0, 1)
    figure.tight_layout()
    save_figure(figure, target)
