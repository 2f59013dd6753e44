"""The library behind the commands: each function does what its command does, and the command
line only parses its options and calls it.

    training.py  run, pretrain, finetune, unfreeze, evaluate: trained models, their
                 evaluations and every report on them

May import: `tlcli.insight`, `tlcli.train`, `tlcli.config`, the root helpers.

>>> from tlcli import api
>>> sorted(api.__all__)
['evaluate', 'finetune', 'pretrain', 'run', 'unfreeze']
"""

from tlcli.api.training import evaluate, finetune, pretrain, run, unfreeze

__all__ = ["evaluate", "finetune", "pretrain", "run", "unfreeze"]
