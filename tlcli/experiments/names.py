"""Short names for dotted config keys, for tables that must fit a terminal.

A name keeps the key's section (the stage: `finetune.epochs`, never a bare `epochs` that could
be any stage's) and the shortest end of the rest that no other key of that section ends with.

>>> short_names(["finetune.optimizer.learning_rate", "unfreeze.optimizer.learning_rate",
...              "model.head.dropout", "finetune.epochs", "seed"])
{'finetune.optimizer.learning_rate': 'finetune.learning_rate', \
'unfreeze.optimizer.learning_rate': 'unfreeze.learning_rate', \
'model.head.dropout': 'model.dropout', 'finetune.epochs': 'finetune.epochs', 'seed': 'seed'}
>>> short_names(["finetune.optimizer.name", "finetune.schedule.name"])["finetune.schedule.name"]
'finetune.schedule.name'
"""

from __future__ import annotations


def short_names(keys: list[str]) -> dict[str, str]:
    """Each key as its section and the shortest unambiguous end of the rest (see above)."""
    names = {}
    for key in keys:
        section, _, rest = key.partition(".")
        parts = rest.split(".")
        others = [o.partition(".")[2] for o in keys if o != key and o.startswith(section + ".")]
        suffix = rest
        for depth in range(1, len(parts) + 1):
            suffix = ".".join(parts[-depth:])
            if not any(o == suffix or o.endswith("." + suffix) for o in others):
                break
        names[key] = f"{section}.{suffix}" if rest else key
    return names
