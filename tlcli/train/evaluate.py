"""The evaluate stage: score a trained stage on a split, write metrics.json and the matrix plot.

`evaluate` returns the metrics; `score_stage` does the same work and returns an `Evaluation`:
the metrics with the predicted probabilities, true labels and files behind them, from which
`tlcli.insight` writes the error report, calibration, model card and report page.

>>> from tlcli.config import Config
>>> cfg = Config.model_validate({"name": "demo", "data": {"train_dir": ".", "test_split": 0.1},
...                              "model": {"base": "vgg16"}})
>>> evaluation_split(cfg)
'test'
>>> split_file(cfg, "test", "metrics.json"), split_file(cfg, "train", "confusion_matrix.png")
('metrics.json', 'confusion_matrix-train.png')
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tlcli.config import Config
from tlcli.console import Console
from tlcli.data.stage_data import DecodedSplit
from tlcli.errors import DataError
from tlcli.files import atomic_path, read_json, write_json
from tlcli.rundir import CONFUSION_PLOT, LABELS_FILE, METRICS_FILE, PREDICTIONS_FILE, RunDir
from tlcli.runtime.distribute import is_chief
from tlcli.train.prepare import start_stage_work


@dataclass
class Evaluation:
    """One stage scored on one split: what metrics.json says, and the predictions behind it."""

    stage: str
    split: str  # the split's name: test, val or train
    stage_dir: Path
    classes: list[str]
    labels: np.ndarray  # true class per image
    probabilities: np.ndarray  # float32 (images, classes), from the stage's model.keras
    paths: list[Path]
    metrics: dict
    default_split: bool = True  # the split `evaluate.split: auto` picks

    def file(self, name: str) -> Path:
        """Where this evaluation's file `name` (metrics.json, errors.csv, ...) is written."""
        return self.stage_dir / split_file_name(name, self.split, self.default_split)

    def save(self) -> None:
        """predictions.npz beside metrics.json: reports can be drawn again without the model."""
        with atomic_path(self.file(PREDICTIONS_FILE)) as tmp:
            np.savez(
                tmp,
                probabilities=self.probabilities,
                labels=self.labels,
                paths=np.array([str(p) for p in self.paths], dtype=str),
                classes=np.array(self.classes, dtype=str),
                names=np.array([self.stage, self.split], dtype=str),
            )


def load_evaluation(stage_dir: Path) -> Evaluation | None:
    """The evaluation saved in `stage_dir`, or None when the stage was not evaluated."""
    metrics_file, saved_file = stage_dir / METRICS_FILE, stage_dir / PREDICTIONS_FILE
    if not (metrics_file.is_file() and saved_file.is_file()):
        return None
    with np.load(saved_file) as saved:
        stage, split = (str(name) for name in saved["names"])
        return Evaluation(
            stage, split, stage_dir, [str(c) for c in saved["classes"]], saved["labels"],
            saved["probabilities"], [Path(p) for p in saved["paths"]], read_json(metrics_file),
        )  # fmt: skip


def evaluate(cfg: Config, stage: str | None = None, console: Console | None = None) -> dict:
    """Score a trained stage on `evaluate.split`; write metrics.json and confusion_matrix.png
    (named for the split when it is not the default one: see `split_file`)."""
    return score_stage(cfg, stage, console).metrics


def score_stage(
    cfg: Config, stage: str | None = None, console: Console | None = None
) -> Evaluation:
    """`evaluate`, returning the predictions with the metrics."""
    console = console or Console()
    run = RunDir(cfg.run_dir)
    stage = run.trained_stage(stage)
    split_name = evaluation_split(cfg)
    data = start_stage_work(cfg, run, stage, console, write_run_files_too=False)
    check_labels(run, stage, data.classes)
    if split_name not in data.splits:
        raise DataError(f"{run.path}: the {split_name} split has no readable images")
    split = data.splits[split_name]

    from tlcli.train.metrics import calibration_metrics, classification_metrics, metrics_rows
    from tlcli.train.plots import plot_confusion

    probabilities, cut = predict_split(cfg, run, stage, split, data.num_classes)
    metrics = classification_metrics(split.labels, probabilities.argmax(axis=1), data.classes)
    metrics.update(
        calibration=calibration_metrics(split.labels, probabilities),
        stage=stage,
        split=split_name,
        model=str(run.model_path(stage)),
        cached_features=cut,
        seconds=round(time.time() - data.started_at, 2),
    )
    evaluation = Evaluation(
        stage, split_name, run.stage_dir(stage), data.classes, split.labels,
        probabilities, split.paths, metrics,
        default_split=split_name == evaluation_split(cfg, "auto"),
    )  # fmt: skip
    if is_chief():
        write_json(evaluation.file(METRICS_FILE), metrics)
        evaluation.save()
        plot_confusion(
            metrics,
            evaluation.file(CONFUSION_PLOT),
            f"{cfg.name}: {stage}, {split_name}",
        )
    console.table(
        f"{stage} on {split_name} ({len(split)} images): accuracy {metrics['accuracy']:.3f}",
        ["class", "precision", "recall", "f1", "support"],
        metrics_rows(metrics),
    )
    return evaluation


def predict_split(
    cfg: Config, run: RunDir, stage: str, split: DecodedSplit, num_classes: int
) -> tuple[np.ndarray, str | None]:
    """The stage's probabilities on `split`, and the cut whose cached outputs fed them.

    After a cached stage, the frozen bottom's outputs on `split` are in the cache, exact (no
    augmentation): only the top runs on them, the same predictions as the whole model up to
    float rounding. Right after the stage its saved top is enough (`cached_top`; with flip TTA
    inside, the stage cached the mirror images' outputs too, and the top's predictions on both
    are averaged); later (say, model.keras calibrated since), the whole model is loaded and its
    bottom's hash finds the outputs (`exact_cached_outputs`, not with TTA). Otherwise (None)
    the whole model runs on the images.
    """
    import keras

    from tlcli.data.pipeline import inputs_only, make_dataset
    from tlcli.model.split import split_at_head, split_in_base
    from tlcli.model.tta import has_tta
    from tlcli.train.feature_cache import cached_top, exact_cached_outputs

    record = (run.stage_state(stage) or {}).get("cache") or {}
    found = cached_top(
        run.stage_dir(stage), record.get("evaluate", {}), run.model_path(stage), split
    )
    cut = record.get("cut")
    if found is None:
        model = keras.models.load_model(run.model_path(stage), compile=False)
        split_model = None
        if has_tta(model):  # the mirror branch's outputs are kept only by the stage itself
            split_model = None
        elif stage == "finetune":
            split_model = split_at_head(model)
        elif stage == "unfreeze":
            split_model = split_in_base(model)
        features = split_model and exact_cached_outputs(split_model, split, cfg.cache_path, stage)
        if features is None:
            dataset = make_dataset(split, num_classes, cfg.data.batch_size)
            return np.asarray(model.predict(inputs_only(dataset), verbose=0), np.float32), None
        found, cut = (split_model.top, [features]), split_model.cut
    top, outputs = found
    probabilities = []
    for features in outputs:  # with flip TTA: the image's, then its mirror image's
        cached = dataclasses.replace(split, pixels=features, rows=np.arange(len(split)))
        dataset = make_dataset(cached, num_classes, cfg.data.batch_size)
        probabilities.append(np.asarray(top.predict(inputs_only(dataset), verbose=0), np.float32))
    return np.mean(probabilities, axis=0, dtype=np.float32), cut  # TTA: as tta_mean averages


def evaluation_split(cfg: Config, split: str | None = None) -> str:
    """`split` (default: `evaluate.split`); auto is test when the data has one, else val."""
    split = split or cfg.evaluate.split
    if split != "auto":
        return split
    return "test" if (cfg.data.test_dir or cfg.data.test_split) else "val"


def split_file(cfg: Config, split: str, filename: str) -> str:
    """`filename` of an evaluation of `split` under `cfg` (see `split_file_name`)."""
    return split_file_name(filename, split, split == evaluation_split(cfg, "auto"))


def split_file_name(filename: str, split: str, default_split: bool) -> str:
    """`filename` for the split `evaluate.split: auto` picks; for another split, its name is
    added, so scoring another split never replaces the default's files.

    >>> split_file_name("metrics.json", "train", False), split_file_name("errors.csv", "test", True)
    ('metrics-train.json', 'errors.csv')
    """
    if default_split:
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
