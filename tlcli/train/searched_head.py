"""The finetune stage with `finetune.search: auto`: its head found by search on the cached
features (tlcli.train.head_search) instead of trained for `epochs`.

`search_plan` says whether the stage searches (and tells the console why not when it does
not); `fit_head_by_search` caches the mirror images' features when mirrors may be used, runs the
search, puts the chosen head into the network's `predictions` layer and leaves what a fit would:
history.csv (one row: the chosen head's scores), search.json (every candidate's CV accuracy)
and an outcome for stage.json.

The search must earn its place: the head as configured (its dropout, optimizer, epochs and
batch size, as `search: off` trains it) is scored on the same folds, and when no candidate
beats it the stage trains that plain head instead (search.json still says what was tried).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

import tlcli.train.head_search as head_search
from tlcli.console import plural
from tlcli.files import read_rows, write_csv_rows, write_json
from tlcli.model.output_layer import output_layer
from tlcli.rundir import HISTORY_FILE, SEARCH_RECORD
from tlcli.runtime.scope import model_scope
from tlcli.train.fitting import FitOutcome

if TYPE_CHECKING:
    from tlcli.data.stage_data import DecodedSplit
    from tlcli.train.core import StageJob, TrainingInputs


@dataclass
class SearchPlan:
    mirrors: bool  # whether mirror-image candidates are tried (model.tta is not off)


def search_plan(job: StageJob, inputs: TrainingInputs) -> SearchPlan | None:
    """A plan when the finetune head will be searched for; None (said on the console) if not."""
    if job.settings.search == "off":
        return None
    blocker = head_search.search_blocker(
        job.settings,
        job.cfg.model.head,
        job.data_cfg.augment.enabled,
        inputs.bottom is not None and inputs.views == 1,
    )
    if blocker is None and "val" in inputs.splits:
        labels = np.concatenate([inputs.splits["train"].labels, inputs.splits["val"].labels])
    else:
        labels = inputs.splits["train"].labels
    blocker = blocker or head_search.too_few(labels, job.data.num_classes, job.data.classes)
    if blocker:
        job.console.info(f"head search off: {blocker}")
        return None
    return SearchPlan(mirrors=job.cfg.model.tta != "off")


def fit_head_by_search(
    job: StageJob, model, inputs: TrainingInputs, plan: SearchPlan
) -> tuple[FitOutcome, bool] | None:
    """Search, set the chosen head into `model`; (what fit() would have returned, TTA on?), or
    None when no candidate beat the head as configured (the caller then trains that)."""
    from tlcli.data.pipeline import balanced_class_weights

    started = time.perf_counter()
    names = [name for name in ("train", "val") if name in inputs.splits]
    x = _rows(inputs, names)
    y = np.concatenate([inputs.splits[name].labels for name in names])
    x_mirror = _mirror_features(job, inputs, names) if plan.mirrors else None
    weights = (
        balanced_class_weights(inputs.splits["train"].labels, job.data.num_classes)
        if job.data_cfg.class_weight == "balanced"
        else None
    )
    train_rows = np.arange(len(inputs.splits["train"]))
    choice = head_search.search(
        x, y, x_mirror, job.data.num_classes, train_rows=train_rows,
        sample_weight_of_class=weights, seed=job.cfg.seed,
        baseline=_configured_head(job, inputs.model, x, y, weights),
    )  # fmt: skip
    if not choice.beats_baseline:
        _record(job, choice, None, time.perf_counter() - started)
        job.console.info(
            f"head search: no candidate beat the head as configured on the folds (cv accuracy "
            f"{choice.best_cv_accuracy:.3f} against {choice.baseline_cv_accuracy:.3f}): "
            "training it as configured"
        )
        return None
    output_layer(model).set_weights([choice.kernel, choice.bias])
    tta = job.cfg.model.tta == "flip" or choice.flip
    final = _scores(choice, x, x_mirror if tta else None, y, len(train_rows))
    seconds = time.perf_counter() - started
    _record(job, choice, final, seconds)
    job.console.info(
        f"head search: {len(choice.table)} heads x {head_search.FOLDS} folds in {seconds:.1f}s; "
        f"chose L2 {choice.lam:g}{', mirrored images' if choice.flip else ''} "
        f"(cv accuracy {choice.cv_accuracy:.3f})"
    )
    details = {"search": {"lambda": choice.lam, "mirror": choice.flip,
                          "cv_accuracy": round(choice.cv_accuracy, 4),
                          "configured_head_cv_accuracy": choice.baseline_cv_accuracy}}  # fmt: skip
    return FitOutcome(0, 0, False, seconds, final, details=details), tta


def _configured_head(job: StageJob, top, x: np.ndarray, y: np.ndarray, class_weights):
    """The baseline for the search: a fresh copy of the head as configured (`top`: dropout and
    the output layer on the cached features), trained on a fold's rows as `search: off` trains
    it (optimizer, epochs, batch size, class weights, seeded shuffling)."""

    def probabilities(fit_rows: np.ndarray, held: np.ndarray) -> np.ndarray:
        import keras
        import tensorflow as tf

        from tlcli.data.pipeline import steps_per_epoch
        from tlcli.model.optimizers import compile_for_stage

        batch, classes = job.data_cfg.batch_size, job.data.num_classes
        with model_scope(job.cfg.run):
            head = keras.models.clone_model(top)
            compile_for_stage(head, job.settings, steps_per_epoch(len(fit_rows), batch), False)
        targets = np.eye(classes, dtype=np.float32)[y[fit_rows]]
        data = tf.data.Dataset.from_tensor_slices((x[fit_rows], targets))
        data = data.shuffle(len(fit_rows), seed=job.cfg.seed).batch(batch)
        weights = None if class_weights is None else dict(enumerate(class_weights.tolist()))
        head.fit(data, epochs=job.settings.epochs, class_weight=weights, shuffle=False, verbose=0)
        return head.predict(x[held], batch_size=1024, verbose=0)

    return probabilities


def _rows(inputs: TrainingInputs, names: list[str]) -> np.ndarray:
    # read_rows, not the map: the features would count twice in RSS (file pages and the copy)
    return np.concatenate(
        [read_rows(inputs.splits[n].pixels, inputs.splits[n].rows) for n in names]
    )


def _mirror_features(job: StageJob, inputs: TrainingInputs, names: list[str]) -> np.ndarray:
    """The frozen bottom's outputs for the mirror images (cached like the others)."""
    splits = mirror_outputs(job, inputs, tuple(names))
    return np.concatenate([read_rows(splits[n].pixels) for n in names])


def mirror_outputs(
    job: StageJob, inputs: TrainingInputs, names: tuple[str, ...]
) -> dict[str, DecodedSplit]:
    """The frozen bottom's outputs for the mirror images of the splits `names` (those the data
    has), cached: for the head search's mirror candidates (train, val), and after a cached stage
    saved with flip TTA for the split evaluate scores, so that evaluate runs the top alone
    instead of the whole model twice (image and mirror)."""
    from tlcli.train.feature_cache import cache_mirror_outputs

    names = tuple(name for name in names if name in job.data.splits)
    if not names:  # e.g. no split to evaluate: nothing to build the mirrored bottom for
        return {}
    with model_scope(job.cfg.run), job.console.progress() as progress:
        return cache_mirror_outputs(
            inputs.bottom, inputs.model, job.data, batch_size=job.data_cfg.batch_size,
            cache_dir=job.cfg.cache_path, tag=job.name, names=names, progress=progress,
        )  # fmt: skip


def _scores(choice, x, x_mirror, y, n_train: int) -> dict[str, float]:
    """Accuracy and loss on train and val, as fit() logs them."""
    probs = head_search.predict(choice, x, x_mirror)
    picked = np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0)
    final = {}
    for prefix, part in (("", slice(0, n_train)), ("val_", slice(n_train, len(y)))):
        if len(y[part]):
            final[f"{prefix}accuracy"] = float((probs[part].argmax(1) == y[part]).mean())
            final[f"{prefix}loss"] = float(-np.log(picked[part]).mean())
    return final


def _record(job: StageJob, choice, final: dict[str, float] | None, seconds: float) -> None:
    """search.json; history.csv too when the searched head is kept (`final`: its scores)."""
    if final is not None:
        write_csv_rows(job.stage_dir / HISTORY_FILE, [{"epoch": 0, **final}], ["epoch", *final])
    write_json(
        job.stage_dir / SEARCH_RECORD,
        {
            "chosen": {"lambda": choice.lam, "mirror": choice.flip,
                       "cv_accuracy": choice.cv_accuracy},
            "kept": "search" if final is not None else "the head as configured",
            "configured_head_cv_accuracy": choice.baseline_cv_accuracy,
            "folds": head_search.FOLDS,
            "seconds": round(seconds, 2),
            "candidates": choice.table,
            "note": f"{plural(len(choice.table), 'candidate')}, k-fold on train + val; the "
            "chosen one refitted on train",
        },
    )  # fmt: skip
