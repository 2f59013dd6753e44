"""Calibration: is a confidence of 0.9 right 90% of the time? Measured, drawn, and fixed.

Every evaluate measures it (`tlcli.train.metrics.calibration_metrics`: the expected calibration
error over 15 equal-width confidence bins, and the log loss) and draws a reliability diagram.
`calibrate_stage` fixes it with temperature scaling (Guo et al. 2017,
https://arxiv.org/abs/1706.04599): one number T, fitted on the validation split to minimise the
log loss, divides the logits. The most likely class never changes, so accuracy does not either.
The network ends in `Dense(classes, softmax, name="predictions")`, so dividing that layer's
kernel and bias by T *is* the scaling (`tlcli.model.output_layer`): the calibrated model.keras
is still a plain Keras model, and `predict` and every export return calibrated probabilities.
A model with flip TTA inside averages two softmax outputs: there T divides the log of the
mean instead (`tlcli.model.tta`), since the mean of two softened outputs can rank the classes
otherwise than the mean it was fitted on.

In the stage folder: `calibration.json` (T, and log loss and ECE on the validation split before
and after), `uncalibrated_output.npz` (the output layer as trained: calibrating again starts
from it, and `uncalibrate_stage` puts it back), and stage.json's `calibration` says T.

T is fitted on probabilities, not logits: softmax(log p / T) = softmax(z / T), because log p is
z shifted by a constant per image. So it needs nothing but the model's output.

>>> log_p = np.log(np.array([[0.99, 0.01], [0.98, 0.02], [0.97, 0.03], [0.2, 0.8]]))
>>> round(fit_temperature(log_p, np.array([0, 1, 0, 1])), 1)  # overconfident: T > 1
4.2
>>> tempered(log_p, 1.0).round(2)[0]
array([0.99, 0.01])
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tlcli.config import Config
from tlcli.console import Console
from tlcli.errors import DataError
from tlcli.files import atomic_path, read_json, write_json
from tlcli.rundir import RunDir
from tlcli.runtime.distribute import is_chief
from tlcli.runtime.startup import import_tensorflow
from tlcli.serve.predictor import load_keras_model
from tlcli.train.evaluate import check_labels
from tlcli.train.metrics import ECE_BINS, calibration_metrics
from tlcli.train.plots import pyplot, save_figure
from tlcli.train.prepare import start_stage_work

CALIBRATION_FILE = "calibration.json"
RELIABILITY_PLOT = "reliability.png"
TEMPERATURE_RANGE = (0.05, 20.0)


def fit_temperature(log_probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The T that minimises the log loss of softmax(log p / T) on `labels`.

    The log loss is convex in 1/T, so a golden-section search over 1/T finds the minimum.
    """
    rows = np.arange(len(labels))

    def loss(inverse: float) -> float:
        z = log_probabilities * inverse
        z = z - z.max(axis=1, keepdims=True)
        return float((np.log(np.exp(z).sum(axis=1)) - z[rows, labels]).mean())

    low, high = 1 / TEMPERATURE_RANGE[1], 1 / TEMPERATURE_RANGE[0]
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(80):
        a, b = high - ratio * (high - low), low + ratio * (high - low)
        if loss(a) < loss(b):
            high = b
        else:
            low = a
    return float(1 / ((low + high) / 2))


def tempered(log_probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): the probabilities the model gives once scaled by T."""
    z = log_probabilities / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def log_of(probabilities: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probabilities, np.float64), np.finfo(np.float32).tiny, 1))


def stage_temperature(run: RunDir, stage: str) -> float:
    """The temperature the stage's model.keras carries (1.0: not calibrated)."""
    state = run.stage_state(stage) or {}
    return float((state.get("calibration") or {}).get("temperature", 1.0))


def calibrate_stage(cfg: Config, stage: str | None = None, console: Console | None = None) -> dict:
    """Fit T on the validation split and write it into the stage's model.keras (see above)."""
    import_tensorflow()
    # Keras after import_tensorflow(): `tlcli report` reads this module, and loads no TensorFlow
    from tlcli.model.output_layer import UNCALIBRATED_FILE, keep_output_weights

    console = console or Console()
    run = RunDir(cfg.run_dir)
    stage = run.trained_stage(stage)
    data = start_stage_work(cfg, run, stage, console, write_run_files_too=False)
    check_labels(run, stage, data.classes)
    if "val" not in data.splits:
        raise DataError(f"{run.path}: no validation images to fit the temperature on")
    model = _uncalibrated_model(run, stage)
    val = data.splits["val"]
    log_p = log_of(_predict(model, val, data.num_classes, cfg.data.batch_size))
    temperature = fit_temperature(log_p, val.labels)
    record = {
        "temperature": round(temperature, 4),
        "fitted_on": "val",
        "images": len(val),
        "bins": ECE_BINS,
        "before": calibration_metrics(val.labels, tempered(log_p, 1.0)),
        "after": calibration_metrics(val.labels, tempered(log_p, temperature)),
    }
    if is_chief():
        keep_output_weights(model, run.stage_dir(stage) / UNCALIBRATED_FILE)
        _save(with_temperature(model, temperature), run.model_path(stage))
        write_json(run.stage_dir(stage) / CALIBRATION_FILE, record)
        _note_in_stage(run, stage, {"temperature": record["temperature"], "fitted_on": "val"})
    before, after = record["before"], record["after"]
    console.result(
        f"{stage}: calibrated with temperature {temperature:.3f} (fitted on {len(val)} val "
        f"images): log loss {before['nll']:.3f} -> {after['nll']:.3f}, "
        f"ECE {before['ece']:.3f} -> {after['ece']:.3f}"
    )
    return record


def uncalibrate_stage(run_dir: Path, stage: str | None = None, console: Console | None = None):
    """Put the stage's output layer back as trained; a stage never calibrated is left alone."""
    import_tensorflow()
    # Keras after import_tensorflow(): `tlcli report` reads this module, and loads no TensorFlow
    from tlcli.model.output_layer import UNCALIBRATED_FILE

    console = console or Console()
    run = RunDir(run_dir)
    stage = run.trained_stage(stage)
    if not (run.stage_dir(stage) / UNCALIBRATED_FILE).is_file():
        console.info(f"{stage}: not calibrated, nothing to undo")
        return
    model = _uncalibrated_model(run, stage)
    _save(model, run.model_path(stage))
    _note_in_stage(run, stage, None)
    (run.stage_dir(stage) / CALIBRATION_FILE).unlink(missing_ok=True)
    (run.stage_dir(stage) / UNCALIBRATED_FILE).unlink()
    console.result(f"{stage}: calibration removed, {run.model_path(stage)} is as trained")


def with_temperature(model, temperature: float):
    """`model` (uncalibrated) predicting softmax(log p / T) where it predicted p: the output
    layer's logits divided by T, or with flip TTA inside, the log of the mean (see above)."""
    # Keras after import_tensorflow(): `tlcli report` reads this module, and loads no TensorFlow
    from tlcli.model.output_layer import scale_logits
    from tlcli.model.tta import has_tta, rewrapped

    if has_tta(model):
        return rewrapped(model, temperature)
    scale_logits(model, 1 / temperature)
    return model


def read_calibration(stage_dir: Path) -> dict | None:
    path = stage_dir / CALIBRATION_FILE
    return read_json(path) if path.is_file() else None


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


def _uncalibrated_model(run: RunDir, stage: str):
    """The stage's model.keras with its output layer as trained and no temperature after a
    flip TTA mean."""
    # Keras after import_tensorflow(): `tlcli report` reads this module, and loads no TensorFlow
    from tlcli.model.output_layer import UNCALIBRATED_FILE, restore_output_weights
    from tlcli.model.tta import has_tta, rewrapped, tta_temperature

    model = load_keras_model(run.model_path(stage))
    restore_output_weights(model, run.stage_dir(stage) / UNCALIBRATED_FILE)
    if has_tta(model) and tta_temperature(model) != 1.0:
        model = rewrapped(model, 1.0)
    return model


def _predict(model, split, num_classes: int, batch_size: int) -> np.ndarray:
    # tf.data after import_tensorflow(): `tlcli report` reads this module, and loads no TensorFlow
    from tlcli.data.pipeline import inputs_only, make_dataset

    dataset = make_dataset(split, num_classes, batch_size)
    return np.asarray(model.predict(inputs_only(dataset), verbose=0), np.float32)


def _save(model, path: Path) -> None:
    with atomic_path(path) as tmp:
        model.save(tmp)


def _note_in_stage(run: RunDir, stage: str, calibration: dict | None) -> None:
    """stage.json's `calibration`: what the model.keras carries (removed when None)."""
    state = run.stage_state(stage) or {}
    state.pop("calibration", None)
    if calibration is not None:
        state["calibration"] = calibration
    write_json(run.stage_dir(stage) / "stage.json", state)
