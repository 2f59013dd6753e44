"""The steps every training stage takes once its model is built: one screen, one step each.

    inputs  = training_inputs(job, model)    the model, or its trainable top on cached features
    compile                                  a fresh optimizer for this stage
    datasets                                 train (shuffled, augmented, weighted) and val
    begin_stage                              stage.json says "running": a rerun must resume
    fit_stage                                Keras fit with per-epoch backups (resumable);
                                             unfreeze then keeps the best weight mix with
                                             finetune (weight_mix.py)
      or the head search                     finetune with `search: auto` (head_search_stage.py)
    save                                     the whole model.keras (with mirror TTA inside when
                                             the stage uses it), atomically
    end_stage                                labels, curves, stage.json "finished", no backup

`StageJob` carries what a stage is: its config section, its data and where it writes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from tlcli.cache.evaluate_top import keep_top_for_evaluate
from tlcli.cache.features import cached_features
from tlcli.cache.plan import plan_cache
from tlcli.cache.prefix import shared_prefix
from tlcli.console import plural, shown_path
from tlcli.data.pipeline import EpochBatches, balanced_class_weights, make_dataset, steps_per_epoch
from tlcli.files import atomic_path
from tlcli.model.optimizers import compile_for_stage
from tlcli.model.tta import with_mirror_tta
from tlcli.rundir import BACKUP_DIR, TARGET_STAGES, RunDir
from tlcli.runtime.distribute import is_chief, is_multi_worker, wait_for_workers, write_path
from tlcli.runtime.scope import describe_runtime, model_scope, runtime_line
from tlcli.train.evaluation import evaluation_split
from tlcli.train.fitting import fit_stage
from tlcli.train.head_search_stage import fit_head_by_search, mirror_outputs, search_plan
from tlcli.train.job import FitOutcome, StageJob, StageResult, TrainingInputs
from tlcli.train.record import begin_stage, end_stage
from tlcli.train.tta_choice import stage_saves_tta
from tlcli.train.weight_mix import mix_with_finetune


def train_and_save(job: StageJob, model) -> StageResult:
    """Train (the head search, or fit on cached frozen outputs when that pays), save the whole
    model, with mirror test-time augmentation inside when the stage uses it."""
    inputs = training_inputs(job, model)
    search = search_plan(job, inputs) if job.name == "finetune" else None
    # compiled and its datasets built before the stage begins (and only then fitted)
    prepared = None if search else prepare_fit(job, inputs)
    if is_chief():
        begin_stage(job.run, job.name, job.cfg)
    runtime = describe_runtime(job.cfg.run, inputs.model)
    job.console.info(runtime_line(runtime))
    found = fit_head_by_search(job, model, inputs, search) if search else None
    if found is None and prepared is None:  # no candidate beat the head as configured
        prepared = prepare_fit(job, inputs)
    outcome, tta = found or fit_as_configured(job, model, inputs, prepared)
    saved = with_mirror_tta(model) if tta else model
    # Every worker saves (a save may read variables across workers); the chief's is the run's.
    with atomic_path(write_path(job.run.model_path(job.name))) as tmp:
        saved.save(tmp)
    if is_chief() and inputs.cache["used"]:  # evaluate may then run the top alone
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


@dataclass
class PreparedFit:
    """What `fit_as_configured` trains with, prepared before the stage begins."""

    train: EpochBatches
    val_ds: Any  # tf.data.Dataset, or None without a validation split


def prepare_fit(job: StageJob, inputs: TrainingInputs) -> PreparedFit:
    """Compile the model the stage trains and build its datasets."""
    steps = steps_per_epoch(len(job.data.splits["train"]), job.data_cfg.batch_size)
    with model_scope(job.cfg.run):
        compile_for_stage(inputs.model, job.stage_cfg, steps, job.cfg.run.jit_compile)
    return PreparedFit(*stage_datasets(job, inputs))


def fit_as_configured(
    job: StageJob, model, inputs: TrainingInputs, prepared: PreparedFit
) -> tuple[FitOutcome, bool]:
    """Fit for the stage's epochs (resuming from its backups); (outcome, TTA on?). Unfreeze
    ends with the best finetune/unfreeze weight mix."""
    finetune_saved_tta = job.name == "unfreeze" and finetune_has_tta(job.run)
    tta = stage_saves_tta(job.cfg.model.tta, job.name, finetune_saved_tta=finetune_saved_tta)
    outcome = fit_stage(
        inputs.model, prepared.train, prepared.val_ds, job.stage_cfg, write_path(job.stage_dir),
        job.console.keras_verbose, resume_from=job.stage_dir / BACKUP_DIR,
        extra_callbacks=job.callbacks,
    )  # fmt: skip
    if job.name == "unfreeze":
        outcome = mix_with_finetune(job, model, outcome, tta)
    return outcome, tta


def finetune_has_tta(run: RunDir) -> bool:
    state = run.stage_state("finetune") or {}
    return bool(state.get("tta"))


def training_inputs(job: StageJob, model) -> TrainingInputs:
    """Swap in the trainable top and cached bottom outputs when the cache plan says it pays."""
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
            job.name, model, job.stage_cfg, job.data_cfg, job.data, job.cfg.cache_path,
            needed=getattr(job.stage_cfg, "search", "off") == "auto",
        )  # fmt: skip
    job.console.info(plan.reason)
    if plan.cut is None:
        plain.cache["reason"] = plan.reason
        return plain
    started = time.perf_counter()
    # the split evaluate scores too, so that it runs only the top (tlcli.train.evaluation)
    names = ("train", "val", evaluation_split(job.cfg))
    with model_scope(job.cfg.run), job.console.progress() as progress:
        prefix = None
        if job.name == "finetune":  # one pass of the frozen prefix for finetune and unfreeze
            prefix = shared_prefix(
                job.cfg, model, job.data, views=plan.views, augment=augment, progress=progress,
                names=names,
            )  # fmt: skip
        splits, reused = cached_features(
            plan.cut,
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
        "cut": plan.cut.at,
        "views": plan.views,
        "reused": reused,
        "seconds": round(seconds, 2),
        "unfreeze_prefix": prefix is not None,  # cached for unfreeze in the same pass
    }
    return TrainingInputs(plan.cut.top, splits, plan.views, None, summary, plan.cut.bottom)


def stage_datasets(job: StageJob, inputs: TrainingInputs):
    """The training batches (shuffled, augmented, class-weighted) and the validation dataset."""
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
