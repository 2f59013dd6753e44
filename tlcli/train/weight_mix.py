"""End `unfreeze` with the best mix of the finetune and unfreeze weights, chosen on validation.

Unfreezing can lose what finetune had: too high a rate, too few images, a base far from the
data. Weight-space ensembling (WiSE-FT, Wortsman et al. 2022) interpolates every weight between
the two models, theta = (1 - a) finetune + a unfreeze; the unfreeze stage scores a in MIXES on
the validation split and keeps the best. a = 0 is the finetune model itself, so the stage never
ends below finetune on validation. Ties go to the smaller a: unfreezing is kept only as far as
it shows a gain on validation (on hymenoptera, validation was 1.0 for every a while test lost
1.5 points from a = 0 to 1; README, "Better models by default").
`unfreeze.interpolate: off` keeps the last epoch's weights as they are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tlcli.console import plural
from tlcli.errors import RunError
from tlcli.rundir import UNCALIBRATED_FILE
from tlcli.train.fitting import FitOutcome

if TYPE_CHECKING:
    from tlcli.train.core import StageJob

MIXES = (0.0, 0.25, 0.5, 0.75, 1.0)


def mix_with_finetune(job: StageJob, model, outcome: FitOutcome, tta: bool) -> FitOutcome:
    """Set `model` (the unfreeze network, trained) to the best mix; the outcome says which."""
    if job.settings.interpolate == "off" or outcome.epochs_done == 0:
        return outcome
    if "val" not in job.data.splits:
        job.console.info("weight mix off: no validation split to choose on")
        return outcome
    import time

    import keras

    from tlcli.data.pipeline import inputs_only, make_dataset
    from tlcli.model.output_layer import restore_output_weights
    from tlcli.model.tta import has_tta, with_flip_tta, without_tta
    from tlcli.runtime.scope import model_scope

    started = time.perf_counter()
    with model_scope(job.cfg.run):
        start = keras.models.load_model(job.run.model_path("finetune"), compile=False)
        if has_tta(start):
            start = without_tta(start, base_training=False)
        # Unfreeze started from the head as trained, not as calibrated since: mix from there.
        restore_output_weights(start, job.run.stage_dir("finetune") / UNCALIBRATED_FILE)
        trained, begin = model.get_weights(), start.get_weights()
        if [w.shape for w in trained] != [w.shape for w in begin]:
            raise RunError(f"{job.run.model_path('finetune')}: not the network unfreeze trained")
        scored = with_flip_tta(model) if tta else model
        val = job.data.splits["val"]
        batches = inputs_only(make_dataset(val, job.data.num_classes, job.data_cfg.batch_size))
        accuracies = []
        for mix in MIXES:
            model.set_weights(_mix(begin, trained, mix))
            predicted = scored.predict(batches, verbose=0).argmax(1)
            accuracies.append(float((predicted == val.labels).mean()))
        best = max(range(len(MIXES)), key=lambda i: (accuracies[i], -MIXES[i]))
        model.set_weights(_mix(begin, trained, MIXES[best]))
    job.console.info(
        f"weight mix: finetune -> unfreeze at {', '.join(f'{m:g}' for m in MIXES)}: val accuracy "
        f"{' '.join(f'{a:.3f}' for a in accuracies)}; kept {MIXES[best]:g}"
        f" (after {plural(outcome.epochs_done, 'epoch')})"
    )
    final = {**outcome.final, "val_accuracy": accuracies[best]}
    details = {**outcome.details, "weight_mix": {
        "mixes": list(MIXES), "val_accuracy": accuracies, "chosen": MIXES[best],
        "seconds": round(time.perf_counter() - started, 2)}}  # fmt: skip
    return FitOutcome(
        outcome.epochs_done, outcome.resumed_from, outcome.stopped_early, outcome.seconds, final,
        outcome.first_batch_at, outcome.backup_seconds, details,
    )  # fmt: skip


def _mix(begin: list[np.ndarray], end: list[np.ndarray], mix: float) -> list[np.ndarray]:
    """(1 - mix) begin + mix end for float weights; others (counters) as at the end. The ends
    are the models themselves (exactly, even when a diverged unfreeze left NaNs)."""
    if mix in (0.0, 1.0):
        return [b if not np.issubdtype(b.dtype, np.floating) or mix else a
                for a, b in zip(begin, end, strict=True)]  # fmt: skip
    return [
        ((1 - mix) * a + mix * b).astype(b.dtype) if np.issubdtype(b.dtype, np.floating) else b
        for a, b in zip(begin, end, strict=True)
    ]
