"""Temperature scaling: fit T on the validation split and write it into a stage's model.keras.

Every evaluate measures calibration (`tlcli.train.metrics.calibration_metrics`: the expected
calibration error over equal-width confidence bins, and the log loss); `tlcli.insight.calibration`
draws the reliability diagram. `calibrate_stage` fixes it with temperature scaling (Guo et al.
2017, https://arxiv.org/abs/1706.04599): one number T, fitted on the validation split to minimise
the log loss, divides the logits. The most likely class never changes, so accuracy does not either.
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
from tlcli.errors import DataError, RunError
from tlcli.files import atomic_path
from tlcli.rundir import CALIBRATION_RECORD, UNCALIBRATED_FILE, RunDir
from tlcli.runtime.distribute import is_chief
from tlcli.runtime.startup import import_tensorflow
from tlcli.train.evaluate import check_labels
from tlcli.train.metrics import ECE_BINS, calibration_metrics
from tlcli.train.prepare import start_stage_work

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


def calibrate_stage(cfg: Config, stage: str | None = None, console: Console | None = None) -> dict:
    """Fit T on the validation split and write it into the stage's model.keras (see above)."""
    import_tensorflow()
    # Keras after import_tensorflow(), which starts TensorFlow quietly
    from tlcli.model.output_layer import keep_output_weights

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
        run.write_stage_record(stage, CALIBRATION_RECORD, record)
        calibration = {"temperature": record["temperature"], "fitted_on": "val"}
        run.set_stage_fact(stage, "calibration", calibration)
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
    console = console or Console()
    run = RunDir(run_dir)
    stage = run.trained_stage(stage)
    if not (run.stage_dir(stage) / UNCALIBRATED_FILE).is_file():
        console.info(f"{stage}: not calibrated, nothing to undo")
        return
    model = _uncalibrated_model(run, stage)
    _save(model, run.model_path(stage))
    run.set_stage_fact(stage, "calibration", None)
    (run.stage_dir(stage) / CALIBRATION_RECORD).unlink(missing_ok=True)
    (run.stage_dir(stage) / UNCALIBRATED_FILE).unlink()
    console.result(f"{stage}: calibration removed, {run.model_path(stage)} is as trained")


def with_temperature(model, temperature: float):
    """`model` (uncalibrated) predicting softmax(log p / T) where it predicted p: the output
    layer's logits divided by T, or with flip TTA inside, the log of the mean (see above)."""
    # Keras after import_tensorflow(), which starts TensorFlow quietly
    from tlcli.model.output_layer import scale_logits
    from tlcli.model.tta import has_tta, rewrapped

    if has_tta(model):
        return rewrapped(model, temperature)
    scale_logits(model, 1 / temperature)
    return model


def _uncalibrated_model(run: RunDir, stage: str):
    """The stage's model.keras with its output layer as trained and no temperature after a
    flip TTA mean."""
    # Keras after import_tensorflow(), which starts TensorFlow quietly
    import keras

    from tlcli.model.output_layer import restore_output_weights
    from tlcli.model.tta import has_tta, rewrapped, tta_temperature

    path = run.model_path(stage)
    try:
        model = keras.models.load_model(path, compile=False)
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: cannot load the model: {exc}") from None
    restore_output_weights(model, run.stage_dir(stage) / UNCALIBRATED_FILE)
    if has_tta(model) and tta_temperature(model) != 1.0:
        model = rewrapped(model, 1.0)
    return model


def _predict(model, split, num_classes: int, batch_size: int) -> np.ndarray:
    # tf.data after import_tensorflow(), which starts TensorFlow quietly
    from tlcli.data.pipeline import inputs_only, make_dataset

    dataset = make_dataset(split, num_classes, batch_size)
    return np.asarray(model.predict(inputs_only(dataset), verbose=0), np.float32)


def _save(model, path: Path) -> None:
    with atomic_path(path) as tmp:
        model.save(tmp)
