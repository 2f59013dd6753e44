"""Keras optimizers and learning-rate schedules from their config sections.

>>> from tlcli.config import OptimizerConfig, ScheduleConfig
>>> sgd = OptimizerConfig(name="sgd", momentum=0.9)
>>> opt = make_optimizer(sgd, ScheduleConfig(), steps_per_epoch=10, epochs=5)  # doctest: +SKIP
"""

from __future__ import annotations

import keras

from tlcli.config import OptimizerConfig, ScheduleConfig

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
