"""Training: the stages as plain functions, fitting with resume, the head search, metrics.

    stages.py           pretrain, finetune, unfreeze, run_all: what each stage checks and runs
    core.py             the steps every training stage takes once its model is built
    job.py              the types those steps share: StageJob, TrainingInputs, FitOutcome, ...
    prepare.py          before a model: start TensorFlow, write the run's files, load the data
    record.py           a stage's bookkeeping: stage.json, labels, curves
    fitting.py          Keras fit with per-epoch atomic backups, so a killed stage resumes
    training_state.py   a training model's whole state in one file: the per-epoch backup
    head_search_conditions.py  whether finetune searches its head (no TensorFlow: sweeps ask it)
    head_search_math.py   fit many heads on cached features, choose one by k-fold
    head_search_stage.py  finetune with `search: auto`: mirror features, search, record
    tta_choice.py       whether a stage saves mirror TTA inside its model (model.tta)
    weight_mix.py       unfreeze ends with the best finetune/unfreeze weight mix on validation
    evaluation.py       the evaluate stage
    calibration.py      temperature scaling fitted on val, written into the stage's model.keras
    metrics.py          accuracy, precision, recall, F1, confusion matrix, calibration error
    plots.py            curves.png, confusion_matrix.png

May import: `tlcli.cache`, `tlcli.data`, `tlcli.model`, `tlcli.runtime`, `tlcli.config`,
the root helpers.

The modules that train import TensorFlow at the top; this package's own import does not, so
that `metrics.py`, `plots.py` and `head_search_conditions.py` serve reports, `compare` and
sweeps without it. The stage functions load on first use:

>>> from tlcli import train
>>> sorted(name for name in train.__all__)
['evaluate', 'finetune', 'pretrain', 'run_all', 'unfreeze']
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlcli.runtime.startup import import_tensorflow

__all__ = ["evaluate", "finetune", "pretrain", "run_all", "unfreeze"]

if TYPE_CHECKING:
    from tlcli.train.evaluation import evaluate
    from tlcli.train.stages import finetune, pretrain, run_all, unfreeze


def __getattr__(name: str):
    """`tlcli.train.run_all` and the other stage functions, imported when first asked for."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import_tensorflow()  # quietly, before the stages import Keras
    # on first use: `import tlcli.train` (reports, compare, sweeps) loads no TensorFlow
    from tlcli.train import evaluation, stages

    globals().update(
        evaluate=evaluation.evaluate,
        **{
            stage: getattr(stages, stage)
            for stage in ("finetune", "pretrain", "run_all", "unfreeze")
        },
    )
    return globals()[name]
