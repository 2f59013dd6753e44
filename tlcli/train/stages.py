"""The stages of a run, each a plain function of (config, mode): pretrain, finetune, unfreeze,
and run_all for every stage the config defines, then evaluate.

Each stage checks what it can before TensorFlow loads (run-dir state, upstream stages), then
loads its data (all image problems surface here), builds or loads its model, and hands it to
`tlcli.train.core.train_and_save`.

>>> import io, tempfile
>>> from tlcli.config import load_config
>>> output = tempfile.mkdtemp()
>>> cfg = load_config("configs/quickstart_scratch.yaml",
...                   [f"output_dir={output}", "finetune.epochs=1", "unfreeze=null"])
>>> result = finetune(cfg, console=Console(quiet=True, file=io.StringIO()))
>>> result.stage, result.epochs, result.model_path.name
('finetune', 1, 'model.keras')
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tlcli.config import Config, TrainStage, stage_fingerprint
from tlcli.console import Console, plural, shown_path
from tlcli.errors import ConfigError, Remedy
from tlcli.rundir import STAGES, TARGET_STAGES, UNCALIBRATED_FILE, Mode, Removed, RunDir
from tlcli.runtime.precision import follow_policy
from tlcli.runtime.scope import model_scope
from tlcli.train.core import StageJob, StageResult, format_accuracy, train_and_save
from tlcli.train.evaluate import check_labels, evaluate
from tlcli.train.head_search import search_blocker
from tlcli.train.prepare import start_stage_work


def pretrain(
    cfg: Config,
    mode: Mode = "new",
    console: Console | None = None,
    *,
    callbacks: Sequence[Any] = (),
) -> StageResult:
    """Train the whole base, with its own head, on the source task (`pretrain.data`).

    `callbacks` (Keras callbacks, here and in the other stages) are passed on to fit().
    """
    console = console or Console()
    if cfg.pretrain is None:
        raise ConfigError(f"{cfg.source}: pretrain: the config has no pretrain section")
    run = RunDir(cfg.run_dir)
    if not run.check_stage(
        "pretrain", mode, stage_fingerprint(cfg, "pretrain"), _say_removed(console)
    ):
        return _skipped(run, "pretrain", console)
    data = start_stage_work(cfg, run, "pretrain", console)
    data_cfg = cfg.stage_data("pretrain")

    from tlcli.model.network import build_classifier
    from tlcli.model.weights import build_base_with_weights

    job = StageJob(cfg, run, "pretrain", data, data_cfg, cfg.pretrain, console, callbacks)
    console.banner("pretrain", _describe(job, cfg.pretrain.weights))
    with model_scope(cfg.run):
        base = build_base_with_weights(
            cfg.model.base, data_cfg.image_size, cfg.pretrain.weights, key="pretrain.weights"
        )
        model = build_classifier(
            base,
            data.num_classes,
            cfg.pretrain.head,
            cfg.model.pooling,
            cfg.model.base,
            base_training=None,
        )
    return train_and_save(job, model)


def finetune(
    cfg: Config,
    mode: Mode = "new",
    console: Console | None = None,
    *,
    callbacks: Sequence[Any] = (),
) -> StageResult:
    """Freeze the base, put a new head on it, train the head on the target data."""
    console = console or Console()
    run = RunDir(cfg.run_dir)
    if "pretrain" in (cfg.model.weights, cfg.model.head):
        run.check_upstream("finetune", "pretrain", stage_fingerprint(cfg, "pretrain"))
    if not run.check_stage(
        "finetune", mode, stage_fingerprint(cfg, "finetune"), _say_removed(console)
    ):
        return _skipped(run, "finetune", console)
    data = start_stage_work(cfg, run, "finetune", console)
    job = StageJob(cfg, run, "finetune", data, cfg.data, cfg.finetune, console, callbacks)
    console.banner("finetune", _describe(job, cfg.model.weights))
    return train_and_save(job, finetune_model(cfg, run, data.num_classes, console))


def finetune_model(cfg: Config, run: RunDir, num_classes: int, console: Console):
    """The model the finetune stage trains: the base with its weights, frozen, and a new head
    (`head: pretrain` copies the pretrain head's hidden layers)."""
    import keras

    from tlcli.model.freezing import freeze_base
    from tlcli.model.network import build_classifier, copy_hidden_head
    from tlcli.model.weights import build_frozen_base

    weights = (
        str(run.model_path("pretrain")) if cfg.model.weights == "pretrain" else cfg.model.weights
    )
    head = cfg.pretrain.head if cfg.model.head == "pretrain" else cfg.model.head
    with model_scope(cfg.run):
        base = build_frozen_base(cfg.model.base, cfg.image_size, weights)
        model = build_classifier(
            base, num_classes, head, cfg.model.pooling, cfg.model.base, base_training=False
        )
        if cfg.model.head == "pretrain":
            source = keras.models.load_model(run.model_path("pretrain"), compile=False)
            copied = copy_hidden_head(source, model)
            console.info(f"adaptive transfer: {copied} hidden head layer(s) copied from pretrain")
        freeze_base(model)
    return model


def unfreeze(
    cfg: Config,
    mode: Mode = "new",
    console: Console | None = None,
    *,
    callbacks: Sequence[Any] = (),
) -> StageResult:
    """Start from the finetune model, let the top of the base train at a low learning rate."""
    console = console or Console()
    if cfg.unfreeze is None:
        raise ConfigError(f"{cfg.source}: unfreeze: the config has no unfreeze section")
    run = RunDir(cfg.run_dir)
    run.check_upstream("unfreeze", "finetune", stage_fingerprint(cfg, "finetune"))
    if not run.check_stage(
        "unfreeze", mode, stage_fingerprint(cfg, "unfreeze"), _say_removed(console)
    ):
        return _skipped(run, "unfreeze", console)
    data = start_stage_work(cfg, run, "unfreeze", console)
    check_labels(run, "finetune", data.classes)
    job = StageJob(cfg, run, "unfreeze", data, cfg.data, cfg.unfreeze, console, callbacks)
    console.banner("unfreeze", _describe(job, "finetune"))
    return train_and_save(job, unfreeze_model(cfg, run, console))


def unfreeze_model(cfg: Config, run: RunDir, console: Console):
    """The model the unfreeze stage trains: the finetune model with the top of its base
    trainable (BatchNorm frozen unless unfreeze.train_bn)."""
    import keras

    from tlcli.model.freezing import unfreeze_top
    from tlcli.model.network import FLOAT32_LAYERS, rebuild
    from tlcli.model.output_layer import restore_output_weights
    from tlcli.model.tta import has_tta, without_tta

    with model_scope(cfg.run):
        model = keras.models.load_model(run.model_path("finetune"), compile=False)
        if has_tta(model):  # trains without the mirror branch; saved with it again
            model = without_tta(model, base_training=False)
        # A calibrated finetune (tlcli.train.calibration) trains on from its head as trained.
        restore_output_weights(model, run.stage_dir("finetune") / UNCALIBRATED_FILE)
        if cfg.unfreeze.train_bn:
            model = rebuild(model, base_training=None)
        # A saved model brings the dtype policy it was trained under; this stage has its own.
        follow_policy(model, keep_float32=FLOAT32_LAYERS)
        trained = unfreeze_top(model, cfg.unfreeze, cfg.model.base)
    console.info(
        f"training {len(trained)} base layers with weights ({trained[0]} ... {trained[-1]})"
        if trained
        else "no base layer with weights selected: only the head trains"
    )
    return model


STAGE_FUNCTIONS = {"pretrain": pretrain, "finetune": finetune, "unfreeze": unfreeze}


def run_all(
    cfg: Config,
    mode: Mode = "new",
    console: Console | None = None,
    *,
    callbacks: Sequence[Any] = (),
) -> list[StageResult]:
    """Every stage the config defines, in order, then evaluate each trained target stage (the
    reports on them are `tlcli.api.run`'s)."""
    console = console or Console()
    run = RunDir(cfg.run_dir)
    started = run.started_stages()
    if mode == "new" and started:
        states = ", ".join(
            f"{s} ({'finished' if run.is_finished(s) else 'interrupted'})" for s in started
        )
        raise ConfigError(
            f"{run.path} already holds {states}",
            remedies=(
                Remedy("mode=resume", "continue it (finished stages are skipped)"),
                Remedy("mode=overwrite", "start again"),
                Remedy("name"),
            ),
        )
    if mode == "overwrite":
        _say_removed(console)(run.remove_stages(list(STAGES)))
        mode = "new"
    results = [
        STAGE_FUNCTIONS[stage](cfg, mode, console, callbacks=callbacks)
        for stage in cfg.defined_stages()
    ]
    summary = []
    for result in results:
        if result.stage in TARGET_STAGES:
            metrics = evaluate(cfg, result.stage, console)
            summary.append(
                [
                    result.stage,
                    format_accuracy(result.val_accuracy),
                    f"{metrics['accuracy']:.3f}",
                    metrics["split"],
                ]
            )
    console.table(
        f"{cfg.name}: summary ({shown_path(run.path)})",
        ["stage", "val acc", "eval acc", "split"],
        summary,
    )
    return results


def _say_removed(console: Console):
    """Says what overwriting removed, and which exports elsewhere it left as they were."""

    def tell(removed: Removed) -> None:
        gone = removed.stages + [shown_path(folder) for folder in removed.exports]
        if gone:
            console.info(f"overwrite: removed {', '.join(gone)}")
        for folder in removed.left_elsewhere:
            console.warn(
                f"{shown_path(folder)} holds an export of a removed stage: left as it is "
                "(export again, with overwrite, to replace it)"
            )

    return tell


def _skipped(run: RunDir, stage: str, console: Console) -> StageResult:
    state = run.stage_state(stage) or {}
    console.info(f"{stage}: already finished in {run.stage_dir(stage)}, skipped")
    final = state.get("final", {})
    return StageResult(
        stage, run.model_path(stage), True, state.get("epochs", 0), 0.0, final.get("val_accuracy")
    )


def _describe(job: StageJob, weights: str) -> str:
    """The banner line: base, weights, classes, split sizes, epochs."""
    settings: TrainStage = job.settings
    sizes = " / ".join(f"{name} {len(split)}" for name, split in job.data.splits.items())
    weights_name = (
        Path(weights).name
        if weights not in ("imagenet", "none", "pretrain", "finetune")
        else weights
    )
    work = plural(settings.epochs, "epoch")
    if job.name == "finetune" and not search_blocker(
        settings, job.cfg.model.head, job.data_cfg.augment.enabled, cached=True
    ):
        work = f"head search (or {work} of the head as configured)"
    return (
        f"{job.cfg.model.base} (from {weights_name}) · {job.data.num_classes} classes · {sizes} · "
        f"{work}"
    )
