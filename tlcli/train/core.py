"""The steps every training stage takes once its model is built: one screen, one step each.

    inputs  = training_inputs(job, model)    the model, or its trainable top on cached features
    compile                                  a fresh optimizer for this stage
    datasets                                 train (shuffled, augmented, weighted) and val
    begin_stage                              stage.json says "running": a rerun must resume
    fit_stage                                Keras fit with per-epoch backups (resumable);
                                             unfreeze then keeps the best weight mix with
                                             finetune (weight_mix.py)
      or the head search                     finetune with `search: auto` (searched_head.py)
    save                                     the whole model.keras (with flip TTA inside when
                                             the stage uses it), atomically
    end_stage                                labels, curves, stage.json "finished", no backup

`StageJob` carries what a stage is: its config section, its data and where it writes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tlcli.config import AugmentConfig, Config, DataConfig, TrainStage
from tlcli.console import Console, plural, shown_path
from tlcli.data.stage_data import DecodedSplit, StageData
from tlcli.files import atomic_path
from tlcli.rundir import BACKUP_DIR, TARGET_STAGES, RunDir
from tlcli.runtime.distribute import is_chief, is_multi_worker, wait_for_workers, write_path
from tlcli.runtime.scope import describe_runtime, model_scope, runtime_line
from tlcli.train.record import begin_stage, end_stage


@dataclass
class StageJob:
    """One training stage being run: which, on what data, with which settings, where."""

    cfg: Config
    run: RunDir
    name: str  # pretrain, finetune or unfreeze
    data: StageData
    data_cfg: DataConfig
    settings: TrainStage  # the stage's own config section
    console: Console
    callbacks: Sequence[Any] = ()  # the caller's Keras callbacks, passed on to fit()

    @property
    def stage_dir(self) -> Path:
        return self.run.stage_dir(self.name)


@dataclass
class TrainingInputs:
    """What fit() trains on: the whole model on decoded images, or its top on cached features."""

    model: Any  # keras.Model: what fit() trains
    splits: dict[str, DecodedSplit]
    views: int  # cached augmented views per training image (1: none)
    augment: AugmentConfig | None  # augmentation still to apply per batch
    cache: dict[str, Any]  # what the feature cache did, for stage.json
    bottom: Any = None  # keras.Model: the frozen bottom whose outputs `splits` hold (cached)


@dataclass
class StageResult:
    stage: str
    model_path: Path
    skipped: bool = False
    epochs: int = 0
    seconds: float = 0.0
    val_accuracy: float | None = None


def train_and_save(job: StageJob, model) -> StageResult:
    """Train (the head search, or fit on cached frozen outputs when that pays), save the whole
    model, with flip test-time augmentation inside when the stage uses it."""
    from tlcli.model.tta import with_flip_tta
    from tlcli.train.evaluate import evaluation_split
    from tlcli.train.searched_head import fit_head_by_search, mirror_outputs, search_plan

    inputs = training_inputs(job, model)
    search = search_plan(job, inputs) if job.name == "finetune" else None
    fit = None if search else fit_as_configured(job, model, inputs)
    if is_chief():
        begin_stage(job.run, job.name, job.cfg)
    runtime = describe_runtime(job.cfg.run, inputs.model)
    job.console.info(runtime_line(runtime))
    found = fit_head_by_search(job, model, inputs, search) if search else None
    if search and found is None:  # no candidate beat the head as configured: train that
        fit = fit_as_configured(job, model, inputs)
    outcome, tta = found or fit()
    saved = with_flip_tta(model) if tta else model
    # Every worker saves (a save may read variables across workers); the chief's is the run's.
    with atomic_path(write_path(job.run.model_path(job.name))) as tmp:
        saved.save(tmp)
    if is_chief() and inputs.cache["used"]:  # evaluate may then run the top alone
        from tlcli.train.feature_cache import keep_top_for_evaluate

        mirrors = mirror_outputs(job, inputs, (evaluation_split(job.cfg),)) if tta else None
        inputs.cache["evaluate"] = keep_top_for_evaluate(
            job.stage_dir, job.run.model_path(job.name), inputs.model, inputs.splits,
            inputs.views, mirrors,
        )  # fmt: skip
    if is_chief():
        end_stage(job, outcome, inputs.cache, runtime, {"tta": "flip" if tta else None})
    wait_for_workers()  # the next stage, on any worker, reads what the chief wrote
    val_accuracy = outcome.final.get("val_accuracy")
    model_path = shown_path(job.run.model_path(job.name))
    work = "head search" if "search" in outcome.details else plural(outcome.epochs_done, "epoch")
    job.console.result(
        f"{job.name}: {work} in {outcome.seconds:.0f}s, "
        f"val accuracy {format_accuracy(val_accuracy)} -> {model_path}"
    )
    return StageResult(
        job.name, job.run.model_path(job.name), False, outcome.epochs_done, outcome.seconds,
        val_accuracy,
    )  # fmt: skip


def fit_as_configured(job: StageJob, model, inputs: TrainingInputs):
    """Compile and build the datasets now; returns fit() -> (outcome, TTA on?) to call once the
    stage has begun. Unfreeze ends with the best finetune/unfreeze weight mix."""
    from tlcli.data.pipeline import steps_per_epoch
    from tlcli.model.optimizers import compile_for_stage
    from tlcli.train.fitting import fit_stage
    from tlcli.train.weight_mix import mix_with_finetune

    steps = steps_per_epoch(len(job.data.splits["train"]), job.data_cfg.batch_size)
    with model_scope(job.cfg.run):
        compile_for_stage(inputs.model, job.settings, steps, job.cfg.run.jit_compile)
    train, val_ds = stage_datasets(job, inputs)
    tta_setting = job.cfg.model.tta
    tta = job.name in TARGET_STAGES and (
        tta_setting == "flip"
        or (job.name == "unfreeze" and tta_setting == "auto" and finetune_has_tta(job.run))
    )

    def fit():
        outcome = fit_stage(
            inputs.model, train, val_ds, job.settings, write_path(job.stage_dir),
            job.console.keras_verbose, resume_from=job.stage_dir / BACKUP_DIR,
            extra_callbacks=job.callbacks,
        )  # fmt: skip
        if job.name == "unfreeze":
            outcome = mix_with_finetune(job, model, outcome, tta)
        return outcome, tta

    return fit


def finetune_has_tta(run: RunDir) -> bool:
    state = run.stage_state("finetune") or {}
    return bool(state.get("tta"))


def training_inputs(job: StageJob, model) -> TrainingInputs:
    """Swap in the trainable top and cached bottom outputs when the cache plan says it pays."""
    from tlcli.train.evaluate import evaluation_split
    from tlcli.train.feature_cache import cache_split_outputs, plan_cache, shared_prefix

    augment = job.data_cfg.augment if job.data_cfg.augment.enabled else None
    plain = TrainingInputs(model, job.data.splits, 1, augment, {"used": False})
    if job.name not in TARGET_STAGES:
        return plain
    if is_multi_worker():  # every worker would have to build, and write, the same cache
        job.console.info("feature cache off: multi-worker training")
        plain.cache["reason"] = "multi-worker"
        return plain
    with model_scope(job.cfg.run):  # the split models train and predict under the run's strategy
        plan = plan_cache(
            job.name, model, job.settings, job.data_cfg, job.data, job.cfg.cache_path,
            needed=getattr(job.settings, "search", "off") == "auto",
        )  # fmt: skip
    job.console.info(plan.reason)
    if plan.split is None:
        plain.cache["reason"] = plan.reason
        return plain
    started = time.perf_counter()
    # the split evaluate scores too, so that it runs only the top (tlcli.train.evaluate)
    names = ("train", "val", evaluation_split(job.cfg))
    with model_scope(job.cfg.run), job.console.progress() as progress:
        prefix = None
        if job.name == "finetune":  # one pass of the frozen prefix for finetune and unfreeze
            prefix = shared_prefix(
                job.cfg, model, job.data, views=plan.views, augment=augment, progress=progress,
                names=names,
            )  # fmt: skip
        splits, reused = cache_split_outputs(
            plan.split,
            job.data,
            views=plan.views,
            augment=augment,
            seed=job.cfg.seed,
            batch_size=job.data_cfg.batch_size,
            cache_dir=job.cfg.cache_path,
            tag=job.name,
            progress=progress,
            names=names,
            source=prefix,
        )
    seconds = time.perf_counter() - started
    job.console.info(f"feature cache {'reused' if reused else 'built'} in {seconds:.1f}s")
    summary = {
        "used": True,
        "cut": plan.split.cut,
        "views": plan.views,
        "reused": reused,
        "seconds": round(seconds, 2),
        "unfreeze_prefix": prefix is not None,  # cached for unfreeze in the same pass
    }
    return TrainingInputs(plan.split.top, splits, plan.views, None, summary, plan.split.bottom)


def stage_datasets(job: StageJob, inputs: TrainingInputs):
    """The training batches (shuffled, augmented, class-weighted) and the validation dataset."""
    from tlcli.data.pipeline import EpochBatches, balanced_class_weights, make_dataset

    splits, batch = inputs.splits, job.data_cfg.batch_size
    weights = (
        balanced_class_weights(splits["train"].labels, job.data.num_classes)
        if job.data_cfg.class_weight == "balanced"
        else None
    )
    train = EpochBatches(
        splits["train"],
        job.data.num_classes,
        batch,
        seed=job.cfg.seed,
        augment=inputs.augment,
        class_weights=weights,
        views=inputs.views,
    )
    val_ds = make_dataset(splits["val"], job.data.num_classes, batch) if "val" in splits else None
    return train, val_ds


def format_accuracy(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
