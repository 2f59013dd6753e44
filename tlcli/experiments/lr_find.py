"""`tlcli lr-find`: the learning-rate range test (Smith, 2017, "Cyclical Learning Rates for
Training Neural Networks", section 3.3).

The stage's model trains for a fixed number of steps while the learning rate rises
exponentially from `start` to `end`, and the loss of each step is recorded; the test stops early
once a running average of the loss (bias-corrected, beta 0.98) exceeds four times its minimum
(it diverged). A rule (tlcli.experiments.lr_suggest) turns the curve into a suggestion.

The test trains what the stage trains, on the same inputs: for finetune that is the head on the
stage's cached features (the same cache the stage uses, built if missing), so it takes seconds;
for unfreeze, the finetune model with its top unfrozen. Nothing is saved but the curve
(`<run>/lr_find/<stage>.png`) and the numbers (`<stage>.json`).

With `finetune.search: auto` and a head the search can fit, the finetune rate does not act
alone: it trains only the head as configured, the baseline the search's candidates must beat.
The result says so (`searched`).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import keras
import numpy as np

from tlcli.config import Config, ScheduleConfig
from tlcli.console import Console
from tlcli.errors import ConfigError
from tlcli.experiments.lr_suggest import Rule, smooth, suggest
from tlcli.files import write_json
from tlcli.model.optimizers import compile_for_stage
from tlcli.rundir import TARGET_STAGES, RunDir, check_stage_name
from tlcli.train.core import StageJob, stage_datasets, training_inputs
from tlcli.train.evaluate import check_labels
from tlcli.train.plots import pyplot, save_figure
from tlcli.train.prepare import start_stage_work
from tlcli.train.searched_head import search_plan
from tlcli.train.stages import finetune_model, unfreeze_model

DIVERGED = 4.0  # stop once the running average of the loss exceeds this many times its minimum


@dataclass
class RangeTest:
    stage: str
    rates: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float
    rule: str
    plot: Path
    seconds: float
    searched: bool  # finetune's head search runs: the rate trains only its baseline


def lr_find(
    cfg: Config,
    stage: str = "finetune",
    console: Console | None = None,
    *,
    start: float = 1e-7,
    end: float = 1.0,
    steps: int = 100,
    rule: Rule = "descent",
) -> RangeTest:
    """Run the range test on `stage`'s model and inputs; returns the curve and the suggestion."""
    console = console or Console()
    check_stage_name(stage, TARGET_STAGES)
    if not 0 < start < end:
        raise ConfigError(f"learning-rate range {start:g}..{end:g}: need 0 < start < end")
    if steps < 10:
        raise ConfigError(f"steps {steps}: the range test needs at least 10 steps")
    started = time.perf_counter()
    model, train_ds, settings, searched = _stage_inputs(cfg, stage, console)
    rates, losses = _range_test(model, train_ds, settings, start, end, steps)
    smoothed = smooth(np.asarray(rates), np.asarray(losses))
    suggestion = suggest(rates, losses, rule)
    folder = RunDir(cfg.run_dir).path / "lr_find"
    plot = folder / f"{stage}.png"
    _plot(rates, losses, smoothed, suggestion.rate, suggestion.why, plot, f"{cfg.name}: {stage}")
    result = RangeTest(
        stage, rates, losses, smoothed.tolist(), suggestion.rate, suggestion.why, plot,
        round(time.perf_counter() - started, 2), searched,
    )  # fmt: skip
    write_json(folder / f"{stage}.json", {**asdict(result), "plot": str(plot)})
    console.result(
        f"suggested {stage}.optimizer.learning_rate: {suggestion.rate:.2g} ({suggestion.why})"
    )
    if searched:
        console.warn(
            "finetune.search is auto: this rate trains only the head as configured, which the "
            "head search keeps only when none of its candidates beats it; set "
            "finetune.search: off to train the head with it"
        )
    if rule == "minimum" and int(np.argmin(smoothed)) < len(rates) // 10:
        console.warn(f"the loss was lowest in the first steps: try a lower start than {start:g}")
    console.info(f"curve: {plot} ({len(rates)} steps, {result.seconds:.1f}s)")
    return result


def _stage_inputs(cfg: Config, stage: str, console: Console):
    """What the stage would train, on what: the model (or its top on cached features), its
    settings, and whether the finetune head search would fit the head instead."""
    run = RunDir(cfg.run_dir)
    settings = getattr(cfg, stage)
    if settings is None:
        raise ConfigError(f"{cfg.source}: {stage}: the config has no {stage} section")
    data = start_stage_work(cfg, run, stage, console, write_run_files_too=False)
    if stage == "unfreeze":
        run.trained_stage("finetune")  # a clear error when there is no finetune model yet
        check_labels(run, "finetune", data.classes)
        model = unfreeze_model(cfg, run, console)
    else:
        model = finetune_model(cfg, run, data.num_classes, console)
    job = StageJob(cfg, run, stage, data, cfg.data, settings, console)
    inputs = training_inputs(job, model)
    train, _ = stage_datasets(job, inputs)
    # quietly: why the search would not run is the stage's to say
    searched = stage == "finetune" and search_plan(replace(job, console=Console(True)), inputs)
    return inputs.model, train, settings, bool(searched)


def _range_test(model, train, settings, start: float, end: float, steps: int):
    """Train `steps` batches at exponentially rising rates; (rates, losses) of each step."""
    # The rate is set before each step: the stage's own schedule would fight it.
    compile_for_stage(model, settings.model_copy(update={"schedule": ScheduleConfig()}), steps)
    growth = (end / start) ** (1 / (steps - 1))
    recorder = _Recorder(start, growth)
    model.fit(
        train.dataset(0, math.ceil(steps / train.steps)),  # epochs' worth of batches to cover it
        steps_per_epoch=steps,
        epochs=1,
        shuffle=False,  # the dataset shuffles itself; Keras warns when asked to shuffle it
        callbacks=[recorder, keras.callbacks.TerminateOnNaN()],
        verbose=0,
    )
    return recorder.rates, recorder.losses


class _Recorder(keras.callbacks.Callback):
    """Set the rate before each batch, record the batch's loss, stop once it diverged."""

    def __init__(self, start: float, growth: float) -> None:
        super().__init__()
        self.start, self.growth = start, growth
        self.rates: list[float] = []
        self.losses: list[float] = []

    def on_train_batch_begin(self, batch: int, logs=None) -> None:
        self.model.optimizer.learning_rate.assign(self.start * self.growth**batch)
        # Keras logs the mean loss of the epoch so far, weighted by batch size: reset, the
        # mean is this batch's own loss.
        self.model.reset_metrics()

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        loss = float((logs or {})["loss"])
        self.rates.append(self.start * self.growth**batch)
        self.losses.append(loss)
        average = running_average(np.asarray(self.losses))
        if not math.isfinite(loss) or average[-1] > DIVERGED * average.min():
            self.model.stop_training = True


def running_average(losses: np.ndarray, beta: float = 0.98) -> np.ndarray:
    """Exponential moving average with bias correction (Smith's and fastai's smoothing): what
    the test can know while it runs."""
    average, out = 0.0, np.empty(len(losses))
    for step, loss in enumerate(losses):
        average = beta * average + (1 - beta) * loss
        out[step] = average / (1 - beta ** (step + 1))
    return out


def _plot(rates, losses, smoothed, suggestion: float, why: str, target: Path, title: str):
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot(rates, losses, alpha=0.3, label="loss")
    axis.plot(rates, smoothed, label="smoothed")
    axis.axvline(suggestion, color="red", linestyle="--", label=f"suggested {suggestion:.2g}")
    axis.set_xscale("log")
    low, high = float(np.min(smoothed)), float(np.max(smoothed[: max(2, len(smoothed) // 2)]))
    axis.set_ylim(low - 0.1 * (high - low + 1e-9), high + 0.5 * (high - low + 1e-9))
    axis.set_xlabel("learning rate")
    axis.set_ylabel("training loss")
    axis.set_title(f"{title}\nsuggested: {why}", fontsize=9)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    save_figure(figure, target)
