"""Training: the stages as plain functions, fitting with resume, the frozen-feature cache.

    stages.py         pretrain, finetune, unfreeze, run_all: what each stage builds
    core.py           the steps every training stage takes once its model is built
    prepare.py        before a model: start TensorFlow, write the run's files, load the data
    record.py         a stage's bookkeeping: stage.json, labels, curves
    fitting.py        Keras fit with per-epoch atomic backups, so a killed stage resumes
    training_state.py a training model's whole state in one file: the per-epoch backup
    feature_cache.py  run the frozen bottom once, cache its outputs, train the top on them
    head_search.py    fit many heads on cached features, choose one by k-fold (the math)
    searched_head.py  the finetune stage with `search: auto`: mirror features, search, record
    weight_mix.py     unfreeze ends with the best finetune/unfreeze weight mix on validation
    evaluate.py       the evaluate stage
    calibration.py    temperature scaling fitted on val, written into the stage's model.keras
    metrics.py        accuracy, precision, recall, F1, confusion matrix
    plots.py          curves.png, confusion_matrix.png

May import: `tlcli.data`, `tlcli.model`, `tlcli.runtime`, `tlcli.config`, the root helpers.

>>> from tlcli import train
>>> sorted(name for name in train.__all__)
['evaluate', 'finetune', 'pretrain', 'run_all', 'unfreeze']
"""

from tlcli.train.evaluate import evaluate
from tlcli.train.stages import finetune, pretrain, run_all, unfreeze

__all__ = ["evaluate", "finetune", "pretrain", "run_all", "unfreeze"]
