"""The stages of a run, each a plain function of (config, mode): pretrain, finetune, unfreeze,
evaluate, and run_all for every stage the config defines.

Each stage checks what it can before TensorFlow loads (run-dir state, upstream stages), then
loads its data (all image problems surface here), builds or loads its model, trains with
resumable callbacks and writes its artefacts atomically.

>>> from tlcli.config import load_config
>>> cfg = load_config("configs/quickstart.yaml")  # doctest: +SKIP
>>> finetune(cfg).val_accuracy  # doctest: +SKIP
0.93
"""

from __future__ import annotations

import math
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tlcli import __version__
from tlcli.config import Config, DataConfig, TrainStage, stage_fingerprint
from tlcli.console import Console
from tlcli.errors import ConfigError, DataError
from tlcli.rundir import Mode, RunDir, atomic_path, write_json, write_text
from tlcli.runtime import (
    describe_runtime,
    follow_policy,
    import_tensorflow,
    is_chief,
    is_multi_worker,
    model_scope,
    runtime_line,
    set_seed,
    start_distribution,
    wait_for_workers,
    write_path,
)

TARGET_STAGES = ("finetune", "unfreeze")


@dataclass
class StageResult:
    stage: str
    model_path: Path
    skipped: bool = False
    epochs: int = 0
    seconds: float = 0.0
    val_accuracy: float | None = None


# ------------------------------------------------------------------------------------ stages


def pretrain(cfg: Config, mode: Mode = "new", console: Console | None = None) -> StageResult:
    """Train the whole base, with its own head, on the source task (`pretrain.data`)."""
    console = console or Console()
    if cfg.pretrain is None:
        raise ConfigError(f"{cfg.source}: pretrain: the config has no pretrain section")
    run = RunDir(cfg.run_dir)
    fingerprint = stage_fingerprint(cfg, "pretrain")
    if not run.check_stage("pretrain", mode, fingerprint):
        return _skipped(run, "pretrain", console)
    data_cfg = cfg.stage_data("pretrain")
    image_size = data_cfg.image_size
    data = _prepare(cfg, run, data_cfg, image_size, run.stage_dir("pretrain"), console)

    from tlcli.model import build_classifier
    from tlcli.weights import build_base_with_weights

    console.banner("pretrain", _describe(cfg, data, cfg.pretrain, cfg.pretrain.weights))
    with model_scope(cfg.run):
        base = build_base_with_weights(
            cfg.model.base, image_size, cfg.pretrain.weights, key="pretrain.weights"
        )
        model = build_classifier(
            base,
            data.num_classes,
            cfg.pretrain.head,
            cfg.model.pooling,
            cfg.model.base,
            base_training=None,
        )
    return _train_and_save(cfg, run, "pretrain", model, data, data_cfg, cfg.pretrain, console)


def finetune(cfg: Config, mode: Mode = "new", console: Console | None = None) -> StageResult:
    """Freeze the base, put a new head on it, train the head on the target data."""
    console = console or Console()
    run = RunDir(cfg.run_dir)
    uses_pretrain = "pretrain" in (cfg.model.weights, cfg.model.head)
    if uses_pretrain:
        run.check_upstream("finetune", "pretrain", stage_fingerprint(cfg, "pretrain"))
    fingerprint = stage_fingerprint(cfg, "finetune")
    if not run.check_stage("finetune", mode, fingerprint):
        return _skipped(run, "finetune", console)
    data = _prepare(cfg, run, cfg.data, cfg.image_size, run.path, console)

    import keras

    from tlcli.model import build_classifier, copy_hidden_head, freeze_base
    from tlcli.weights import build_base_with_weights

    weights = (
        str(run.model_path("pretrain")) if cfg.model.weights == "pretrain" else cfg.model.weights
    )
    head = cfg.pretrain.head if cfg.model.head == "pretrain" else cfg.model.head
    console.banner("finetune", _describe(cfg, data, cfg.finetune, cfg.model.weights))
    with model_scope(cfg.run):
        base = build_base_with_weights(cfg.model.base, cfg.image_size, weights)
        model = build_classifier(
            base, data.num_classes, head, cfg.model.pooling, cfg.model.base, base_training=False
        )
        if cfg.model.head == "pretrain":
            source = keras.models.load_model(run.model_path("pretrain"), compile=False)
            copied = copy_hidden_head(source, model)
            console.info(f"adaptive transfer: {copied} hidden head layer(s) copied from pretrain")
        freeze_base(model)
    return _train_and_save(cfg, run, "finetune", model, data, cfg.data, cfg.finetune, console)


def unfreeze(cfg: Config, mode: Mode = "new", console: Console | None = None) -> StageResult:
    """Start from the finetune model, let the top of the base train at a low learning rate."""
    console = console or Console()
    if cfg.unfreeze is None:
        raise ConfigError(f"{cfg.source}: unfreeze: the config has no unfreeze section")
    run = RunDir(cfg.run_dir)
    run.check_upstream("unfreeze", "finetune", stage_fingerprint(cfg, "finetune"))
    fingerprint = stage_fingerprint(cfg, "unfreeze")
    if not run.check_stage("unfreeze", mode, fingerprint):
        return _skipped(run, "unfreeze", console)
    data = _prepare(cfg, run, cfg.data, cfg.image_size, run.path, console)
    _check_labels(run, "finetune", data.classes)

    import keras

    from tlcli.model import rebuild, unfreeze_top

    console.banner("unfreeze", _describe(cfg, data, cfg.unfreeze, "finetune"))
    with model_scope(cfg.run):
        model = keras.models.load_model(run.model_path("finetune"), compile=False)
        if cfg.unfreeze.train_bn:
            model = rebuild(model, base_training=None)
        # A saved model brings the dtype policy it was trained under; this stage has its own.
        follow_policy(model)
        trained = unfreeze_top(model, cfg.unfreeze, cfg.model.base)
    console.info(
        f"training {len(trained)} base layers with weights ({trained[0]} ... {trained[-1]})"
        if trained
        else "no base layer with weights selected: only the head trains"
    )
    return _train_and_save(cfg, run, "unfreeze", model, data, cfg.data, cfg.unfreeze, console)


def evaluate(cfg: Config, stage: str | None = None, console: Console | None = None) -> dict:
    """Score a trained stage on `evaluate.split`; write metrics.json and confusion_matrix.png."""
    console = console or Console()
    run = RunDir(cfg.run_dir)
    stage = run.trained_stage(stage)
    split_name = _evaluation_split(cfg)
    data = _prepare(cfg, run, cfg.data, cfg.image_size, run.path, console, write_run_files=False)
    _check_labels(run, stage, data.classes)
    if split_name not in data.splits:
        raise DataError(f"{run.path}: the {split_name} split has no readable images")
    split = data.splits[split_name]

    import keras

    from tlcli.pipeline import inputs_only, make_dataset
    from tlcli.report import classification_metrics, metrics_rows, plot_confusion

    model = keras.models.load_model(run.model_path(stage), compile=False)
    dataset = make_dataset(split, data.num_classes, cfg.data.batch_size)
    probabilities = model.predict(inputs_only(dataset), verbose=0)
    metrics = classification_metrics(split.labels, probabilities.argmax(axis=1), data.classes)
    metrics.update(
        stage=stage,
        split=split_name,
        model=str(run.model_path(stage)),
        seconds=round(time.time() - data.started_at, 2),
    )
    if is_chief():
        write_json(run.stage_dir(stage) / "metrics.json", metrics)
        plot_confusion(
            metrics,
            run.stage_dir(stage) / "confusion_matrix.png",
            f"{cfg.name}: {stage}, {split_name}",
        )
    console.table(
        f"{stage} on {split_name} ({len(split)} images): accuracy {metrics['accuracy']:.3f}",
        ["class", "precision", "recall", "f1", "support"],
        metrics_rows(metrics),
    )
    return metrics


def run_all(cfg: Config, mode: Mode = "new", console: Console | None = None) -> list[StageResult]:
    """Every stage the config defines, in order, then evaluate each trained target stage."""
    console = console or Console()
    run = RunDir(cfg.run_dir)
    started = run.started_stages()
    if mode == "new" and started:
        states = ", ".join(
            f"{s} ({'finished' if run.is_finished(s) else 'interrupted'})" for s in started
        )
        raise ConfigError(
            f"{run.path} already holds {states}; use --resume to continue it (finished stages "
            "are skipped), --overwrite to start again, or another run name"
        )
    if mode == "overwrite":
        removed = run.remove_stages(["pretrain", *TARGET_STAGES])
        if removed:
            console.info(f"overwriting {run.path}: removed {', '.join(removed)}")
        mode = "new"
    functions = {"pretrain": pretrain, "finetune": finetune, "unfreeze": unfreeze}
    results = [functions[stage](cfg, mode, console) for stage in cfg.defined_stages()]
    summary = []
    for result in results:
        if result.stage in TARGET_STAGES:
            metrics = evaluate(cfg, result.stage, console)
            summary.append(
                [
                    result.stage,
                    _fmt(result.val_accuracy),
                    f"{metrics['accuracy']:.3f}",
                    metrics["split"],
                ]
            )
    console.table(
        f"{cfg.name}: summary ({run.path})", ["stage", "val acc", "eval acc", "split"], summary
    )
    return results


# ----------------------------------------------------------------------------------- helpers


def _prepare(cfg, run, data_cfg, image_size, report_dir, console, write_run_files=True):
    """Start TensorFlow, seed it, write the run's own files, and load the stage's data."""
    from tlcli.data import load_stage_data

    started_at = time.time()
    import_tensorflow()
    start_distribution(cfg.run)  # first: a multi-worker strategy must precede other TF work
    set_seed(cfg.seed)
    if write_run_files and is_chief():
        _write_run_files(cfg, run)
    report_dir = write_path(report_dir)  # other workers keep their reports to themselves
    with console.progress() as progress:
        data = load_stage_data(
            data_cfg, tuple(image_size), cfg.seed, write_path(run.cache_dir), report_dir, progress
        )
    data.started_at = started_at
    report = data.report
    if report["skipped"] or report["converted"]:
        console.warn(
            f"{len(report['skipped'])} file(s) skipped, {len(report['converted'])} converted: "
            f"see {report_dir / 'data_report.json'}"
        )
    for warning in report["warnings"]:
        console.warn(warning)
    if report_dir == run.path and is_chief():
        write_text(run.path / "labels.txt", "\n".join(data.classes) + "\n")
    return data


def _write_run_files(cfg: Config, run: RunDir) -> None:
    import keras
    import tensorflow as tf

    run.path.mkdir(parents=True, exist_ok=True)
    write_text(run.path / "config.yaml", cfg.to_yaml())
    versions = {
        "tlcli": __version__,
        "python": sys.version.split()[0],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
    }
    write_json(run.path / "versions.json", versions)


def _train_and_save(
    cfg: Config,
    run: RunDir,
    stage: str,
    model,
    data,
    data_cfg: DataConfig,
    stage_cfg: TrainStage,
    console: Console,
) -> StageResult:
    """Compile, fit (on cached frozen outputs when that pays), save the whole model."""
    from tlcli.model import compile_for_stage
    from tlcli.pipeline import balanced_class_weights, make_dataset
    from tlcli.report import plot_curves
    from tlcli.training import fit_stage

    stage_dir = run.stage_dir(stage)
    augment = data_cfg.augment if data_cfg.augment.enabled else None
    train_model, splits, views, cache_summary = model, data.splits, 1, {"used": False}
    if stage in TARGET_STAGES:
        train_model, splits, views, augment, cache_summary = _use_frozen_cache(
            cfg, run, stage, model, data, data_cfg, stage_cfg, console, augment
        )
    with model_scope(cfg.run):
        compile_for_stage(train_model, stage_cfg, _steps(data, data_cfg), cfg.run.jit_compile)
    weights = (
        balanced_class_weights(splits["train"].labels, data.num_classes)
        if data_cfg.class_weight == "balanced"
        else None
    )
    batch = data_cfg.batch_size
    train_ds = make_dataset(
        splits["train"],
        data.num_classes,
        batch,
        shuffle=True,
        seed=cfg.seed,
        augment=augment,
        class_weights=weights,
        views=views,
    )
    val_ds = make_dataset(splits["val"], data.num_classes, batch) if "val" in splits else None
    if is_chief():
        run.start_stage(stage, stage_fingerprint(cfg, stage))
    runtime = describe_runtime(cfg.run, train_model)
    console.info(runtime_line(runtime))
    outcome = fit_stage(
        train_model,
        train_ds,
        val_ds,
        stage_cfg,
        write_path(stage_dir),
        console.keras_verbose,
        resume_from=stage_dir / "backup",
    )
    # Every worker saves (a save may read variables across workers); the chief's is the run's.
    with atomic_path(write_path(run.model_path(stage))) as tmp:
        model.save(tmp)
    if is_chief():
        write_text(stage_dir / "labels.txt", "\n".join(data.classes) + "\n")
        plot_curves(stage_dir / "history.csv", stage_dir / "curves.png", f"{cfg.name}: {stage}")
        run.finish_stage(
            stage,
            {
                "epochs": outcome.epochs_done,
                "resumed_from_epoch": outcome.resumed_from,
                "stopped_early": outcome.stopped_early,
                "timings": {
                    "data_seconds": round(data.seconds, 2),
                    "cache_seconds": cache_summary.get("seconds", 0.0),
                    "fit_seconds": round(outcome.seconds, 2),
                    "first_batch_at": outcome.first_batch_at,
                    "stage_started_at": data.started_at,
                    "stage_finished_at": time.time(),
                },
                "cache": cache_summary,
                "runtime": runtime,
                "final": outcome.final,
            },
        )
        shutil.rmtree(stage_dir / "backup", ignore_errors=True)
    wait_for_workers()  # the next stage, on any worker, reads what the chief wrote
    val_accuracy = outcome.final.get("val_accuracy")
    console.result(
        f"{stage}: {outcome.epochs_done} epochs in {outcome.seconds:.0f}s, "
        f"val accuracy {_fmt(val_accuracy)} -> {run.model_path(stage)}"
    )
    return StageResult(
        stage, run.model_path(stage), False, outcome.epochs_done, outcome.seconds, val_accuracy
    )


def _use_frozen_cache(cfg, run, stage, model, data, data_cfg, stage_cfg, console, augment):
    """Swap in the trainable top and cached bottom outputs when the plan says it pays."""
    from tlcli.feature_cache import cache_split_outputs, plan_cache

    if is_multi_worker():  # every worker would have to build, and write, the same cache
        console.info("feature cache off: multi-worker training")
        return model, data.splits, 1, augment, {"used": False, "reason": "multi-worker"}
    with model_scope(cfg.run):  # the split models train and predict under the run's strategy
        plan = plan_cache(stage, model, stage_cfg, data_cfg, data, run.cache_dir)
    console.info(plan.reason)
    if plan.split is None:
        return model, data.splits, 1, augment, {"used": False, "reason": plan.reason}
    started = time.perf_counter()
    with model_scope(cfg.run), console.progress() as progress:
        splits, reused = cache_split_outputs(
            plan.split,
            data,
            views=plan.views,
            augment=augment,
            seed=cfg.seed,
            batch_size=data_cfg.batch_size,
            cache_dir=run.cache_dir,
            tag=stage,
            progress=progress,
        )
    seconds = time.perf_counter() - started
    console.info(f"feature cache {'reused' if reused else 'built'} in {seconds:.1f}s")
    summary = {
        "used": True,
        "cut": plan.split.cut,
        "views": plan.views,
        "reused": reused,
        "seconds": round(seconds, 2),
    }
    return plan.split.top, splits, plan.views, None, summary


def _skipped(run: RunDir, stage: str, console: Console) -> StageResult:
    state = run.stage_state(stage) or {}
    console.info(f"{stage}: already finished in {run.stage_dir(stage)}, skipped")
    final = state.get("final", {})
    return StageResult(
        stage, run.model_path(stage), True, state.get("epochs", 0), 0.0, final.get("val_accuracy")
    )


def _check_labels(run: RunDir, stage: str, classes: list[str]) -> None:
    labels_file = run.stage_dir(stage) / "labels.txt"
    trained = labels_file.read_text().split("\n")[:-1] if labels_file.is_file() else classes
    if trained != classes:
        raise DataError(
            f"{run.stage_dir(stage)} was trained on classes {trained}, the data now has {classes}"
        )


def _evaluation_split(cfg: Config) -> str:
    if cfg.evaluate.split != "auto":
        return cfg.evaluate.split
    return "test" if (cfg.data.test_dir or cfg.data.test_split) else "val"


def _steps(data, data_cfg: DataConfig) -> int:
    return max(1, math.ceil(len(data.splits["train"]) / data_cfg.batch_size))


def _describe(cfg: Config, data, stage_cfg: TrainStage, weights: str) -> str:
    sizes = " / ".join(f"{name} {len(split)}" for name, split in data.splits.items())
    weights_name = (
        Path(weights).name
        if weights not in ("imagenet", "none", "pretrain", "finetune")
        else weights
    )
    return (
        f"{cfg.model.base} (from {weights_name}) · {data.num_classes} classes · {sizes} · "
        f"{stage_cfg.epochs} epochs"
    )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


__all__ = ["evaluate", "finetune", "pretrain", "run_all", "unfreeze"]
