"""Keras optimizers and learning-rate schedules from their config sections; compiling a stage.

>>> sgd = OptimizerConfig(name="sgd", learning_rate=0.1, momentum=0.9)
>>> optimizer = make_optimizer(sgd, ScheduleConfig(name="step"), steps_per_epoch=10, epochs=5)
>>> type(optimizer).__name__, round(float(optimizer.learning_rate), 6)
('SGD', 0.1)
>>> schedule = make_schedule(ScheduleConfig(name="step"), 0.1, steps_per_epoch=10, epochs=5)
>>> [round(float(schedule(step)), 3) for step in (0, 9, 10, 25)]
[0.1, 0.1, 0.05, 0.025]
"""

from __future__ import annotations

import keras

from tlcli.config import OptimizerConfig, ScheduleConfig, TrainStage

OPTIMIZERS = {
    "sgd": keras.optimizers.SGD,
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "rmsprop": keras.optimizers.RMSprop,
}


def make_schedule(
    schedule: ScheduleConfig, learning_rate: float, steps_per_epoch: int, epochs: int
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The learning rate (a float for `constant`) over optimizer steps."""
    schedules = keras.optimizers.schedules
    total_steps = max(1, steps_per_epoch * epochs)
    if schedule.name == "constant":
        return learning_rate
    if schedule.name == "cosine":
        decay_steps = schedule.decay_steps or max(1, total_steps - schedule.warmup_steps)
        if schedule.warmup_steps:
            return schedules.CosineDecay(
                0.0,
                decay_steps,
                alpha=schedule.alpha,
                warmup_target=learning_rate,
                warmup_steps=schedule.warmup_steps,
            )
        return schedules.CosineDecay(learning_rate, decay_steps, alpha=schedule.alpha)
    decay_steps = schedule.decay_steps or max(1, steps_per_epoch)
    if schedule.name == "inverse_time":
        return schedules.InverseTimeDecay(learning_rate, decay_steps, schedule.decay_rate)
    return schedules.ExponentialDecay(
        learning_rate, decay_steps, schedule.decay_rate, staircase=schedule.name == "step"
    )


def make_optimizer(
    optimizer: OptimizerConfig, schedule: ScheduleConfig, steps_per_epoch: int, epochs: int
) -> keras.optimizers.Optimizer:
    """A fresh optimizer: each stage recompiles with its own (the Keras fine-tuning recipe)."""
    kwargs: dict = {
        "learning_rate": make_schedule(schedule, optimizer.learning_rate, steps_per_epoch, epochs),
    }
    if optimizer.momentum is not None:
        kwargs["momentum"] = optimizer.momentum
    if optimizer.nesterov is not None:
        kwargs["nesterov"] = optimizer.nesterov
    if optimizer.weight_decay is not None:
        kwargs["weight_decay"] = optimizer.weight_decay
    if optimizer.clipnorm is not None:
        kwargs["clipnorm"] = optimizer.clipnorm
    return OPTIMIZERS[optimizer.name](**kwargs)


def compile_for_stage(
    model: keras.Model,
    stage_cfg: TrainStage,
    steps_per_epoch: int,
    jit_compile: bool | str = "auto",
) -> None:
    """A fresh optimizer, the loss (with label smoothing) and accuracy."""
    model.compile(
        optimizer=make_optimizer(
            stage_cfg.optimizer, stage_cfg.schedule, steps_per_epoch, stage_cfg.epochs
        ),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=stage_cfg.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        jit_compile=jit_compile,
    )
