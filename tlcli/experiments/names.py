"""Short names for dotted config keys, for tables that must fit a terminal.

>>> short_names(["finetune.optimizer.learning_rate", "unfreeze.optimizer.learning_rate",
...              "model.head.dropout"])
{'finetune.optimizer.learning_rate': 'finetune.optimizer.learning_rate', \
'unfreeze.optimizer.learning_rate': 'unfreeze.optimizer.learning_rate', \
'model.head.dropout': 'dropout'}
"""

from __future__ import annotations


def short_names(keys: list[str]) -> dict[str, str]:
    """The shortest dotted suffix of each key that is not also a suffix of another key."""
    names = {}
    for key in keys:
        parts = key.split(".")
        suffix = key
        for depth in range(1, len(parts) + 1):
            suffix = ".".join(parts[-depth:])
            if not any(o != key and (o == suffix or o.endswith("." + suffix)) for o in keys):
                break
        names[key] = suffix
    return names
