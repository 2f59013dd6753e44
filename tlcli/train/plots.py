"""The plots of a run: curves.png (loss and accuracy per epoch, or the head search's candidates
when the search fitted the head) and confusion_matrix.png.

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> _ = (folder / "history.csv").write_text("epoch,accuracy,loss\\n0,0.5,1.2\\n1,0.7,0.9\\n")
>>> plot_curves(folder / "history.csv", folder / "curves.png", "demo")
>>> (folder / "curves.png").stat().st_size > 0
True
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tlcli.files import atomic_path, read_csv_rows


def plot_curves(history_csv: Path, target: Path, title: str) -> None:
    """Loss and accuracy per epoch, train and validation, from history.csv."""
    rows = read_csv_rows(history_csv)
    if rows:
        save_figure(curves_figure(rows, title), target)


def curves_figure(rows: list[dict[str, str]], title: str):
    """The figure of `plot_curves`: epochs from 1, on whole-number ticks only.

    >>> figure = curves_figure([{"epoch": "0", "loss": "1.2"}, {"epoch": "1", "loss": "0.9"}], "")
    >>> figure.canvas.draw()
    >>> [label.get_text() for label in figure.axes[0].get_xticklabels() if "." in label.get_text()]
    []
    """
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator  # after pyplot() has picked the Agg backend

    epochs = [int(r["epoch"]) + 1 for r in rows]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for prefix, style in (("", "-o"), ("val_", "--o")):
            key = prefix + metric
            if key in rows[0]:
                axis.plot(epochs, [float(r[key]) for r in rows], style, label=key, markersize=3)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # no epoch 1.5
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def plot_search(search: dict, target: Path, title: str) -> None:
    """The head search's cross-validated accuracy per L2 strength, with and without mirrored
    images, the head as configured as a line, and the chosen candidate marked (search.json).

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "curves.png"
    >>> rows = [{"mirror": m, "lambda": l, "cv_accuracy": 0.8 + m * 0.01}
    ...         for m in (False, True) for l in (1.0, 0.1)]
    >>> plot_search({"candidates": rows, "chosen": {"lambda": 1.0, "mirror": True,
    ...              "cv_accuracy": 0.81}, "configured_head_cv_accuracy": 0.7}, target, "demo")
    >>> target.is_file()
    True
    """
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 4))
    for mirror in (False, True):
        rows = sorted(
            (r for r in search["candidates"] if r["mirror"] == mirror), key=lambda r: r["lambda"]
        )
        if rows:
            label = "mirrored images" if mirror else "images only"
            axis.plot([r["lambda"] for r in rows], [r["cv_accuracy"] for r in rows], "-o",
                      label=label, markersize=4)  # fmt: skip
    baseline = search.get("configured_head_cv_accuracy")
    if baseline is not None:
        axis.axhline(baseline, color="grey", linestyle="--", label="head as configured")
    chosen = search["chosen"]
    axis.plot([chosen["lambda"]], [chosen["cv_accuracy"]], "r*", markersize=14, label="chosen")
    axis.set_xscale("log")
    axis.set_xlabel("L2 strength")
    axis.set_ylabel("cross-validated accuracy")
    axis.grid(alpha=0.3)
    axis.legend()
    axis.set_title(title)
    figure.tight_layout()
    save_figure(figure, target)


def plot_confusion(metrics: dict, target: Path, title: str) -> None:
    plt = pyplot()
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
    save_figure(figure, target)


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no display)."""
    # on call: the backend must be chosen before pyplot loads, and compare needs no plot
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, target: Path) -> None:
    """Write a figure atomically and free it."""
    with atomic_path(target) as tmp:
        figure.savefig(tmp, dpi=100)
    pyplot().close(figure)
