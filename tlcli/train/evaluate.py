"""The evaluate stage: score a trained stage on a split, write metrics.json and the matrix plot.

>>> from tlcli.config import Config
>>> cfg = Config.model_validate({"name": "demo", "data": {"train_dir": ".", "test_split": 0.1},
...                              "model": {"base": "vgg16"}})
>>> evaluation_split(cfg)
'test'
>>> split_file(cfg, "test", "metrics.json"), split_file(cfg, "train", "confusion_matrix.png")
('metrics.json', 'confusion_matrix-train.png')
"""

from __future__ import annotations

import time
from pathlib import Path

from tlcli.config import Config
from tlcli.console import Console
from tlcli.errors import DataError
from tlcli.files import write_json
from tlcli.rundir import LABELS_FILE, RunDir
from tlcli.runtime.distribute import is_chief
from tlcli.train.prepare import start_stage_work


def evaluate(cfg: Config, stage: str | None = None, console: Console | None = None) -> dict:
    """Score a trained stage on `evaluate.split`; write metrics.json and confusion_matrix.png
    (named for the split when it is not the default one: see `split_file`)."""
    console = console or Console()
    run = RunDir(cfg.run_dir)
    stage = run.trained_stage(stage)
    split_name = evaluation_split(cfg)
    data = start_stage_work(cfg, run, stage, console, write_run_files_too=False)
    check_labels(run, stage, data.classes)
    if split_name not in data.splits:
        raise DataError(f"{run.path}: the {split_name} split has no readable images")
    split = data.splits[split_name]

    import keras

    from tlcli.data.pipeline import inputs_only, make_dataset
    from tlcli.train.metrics import classification_metrics, metrics_rows
    from tlcli.train.plots import plot_confusion

    model = keras.models.load_model(run.model_path(stage), compile=False)
    dataset = make_dataset(split, data.num_classes, cfg.data.batch_size)
    probabilities = model.predict(inputs_only(dataset), verbose=0)
    metrics = classification_metrics(split.labels, probabilities.argmax(axis=1), data.classes)
    metrics.update(
        stage=stage,
        split=split_name,
        model=str(run.model_path(stage)),
        seconds=round(time.time() - data.started_at, 2),
    )
    if is_chief():
        folder = run.stage_dir(stage)
        write_json(folder / split_file(cfg, split_name, "metrics.json"), metrics)
        plot_confusion(
            metrics,
            folder / split_file(cfg, split_name, "confusion_matrix.png"),
            f"{cfg.name}: {stage}, {split_name}",
        )
    console.table(
        f"{stage} on {split_name} ({len(split)} images): accuracy {metrics['accuracy']:.3f}",
        ["class", "precision", "recall", "f1", "support"],
        metrics_rows(metrics),
    )
    return metrics


def evaluation_split(cfg: Config, split: str | None = None) -> str:
    """`split` (default: `evaluate.split`); auto is test when the data has one, else val."""
    split = split or cfg.evaluate.split
    if split != "auto":
        return split
    return "test" if (cfg.data.test_dir or cfg.data.test_split) else "val"


def split_file(cfg: Config, split: str, filename: str) -> str:
    """`filename` for the split `evaluate.split: auto` picks; for another split, its name is
    added (metrics-train.json), so scoring another split never replaces the default's files."""
    if split == evaluation_split(cfg, "auto"):
        return filename
    stem, dot, suffix = filename.partition(".")
    return f"{stem}-{split}{dot}{suffix}"


def check_labels(run: RunDir, stage: str, classes: list[str]) -> None:
    """The stage was trained on `classes`, in this order: a DataError if not."""
    labels_file = run.stage_dir(stage) / LABELS_FILE
    trained = read_lines(labels_file) if labels_file.is_file() else classes
    if trained != classes:
        raise DataError(
            f"{run.stage_dir(stage)} was trained on classes {trained}, the data now has {classes}"
        )


def read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")[:-1]
