"""Whether the finetune stage fits its head by search, in the words of the config; no
TensorFlow here, so that a sweep can ask before any trial trains.

>>> from tlcli.config import FinetuneConfig, HeadConfig
>>> search_blocker(FinetuneConfig(), HeadConfig(dense=[64]), augmented=False, cached=True)
'the head has hidden layers (model.head.dense)'
>>> too_few(np.array([0, 0, 1]), 2, ["ant", "bee"])
"class 'bee' has 1 images in train + val (5 needed)"
"""

from __future__ import annotations

import numpy as np

FOLDS = 5
MIN_PER_CLASS = FOLDS  # fewer images of a class than folds: no search
# The finetune keys that say how the head as configured trains. With the search on they shape
# its baseline (the head it must beat on the same folds), whatever their values: a config means
# the same whether a key is written out or left to its default.
BASELINE_KEYS = ("epochs", "optimizer", "schedule", "label_smoothing", "early_stopping")


def search_blocker(stage_cfg, head, augmented: bool, cached: bool) -> str | None:
    """Why the head cannot be searched for (None: it can), in the words of the config.

    Only values decide, never whether a key was written: a resolved config.yaml, a sweep
    trial's config and best.yaml search exactly when the run they came from did.
    """
    if stage_cfg.search == "off":
        return "finetune.search is off"
    if head == "pretrain" or head.dense:
        return "the head has hidden layers (model.head.dense)"
    if augmented:
        return "data.augment is on: the head trains on augmented images as configured"
    if not cached:
        return "the features are not cached (finetune.cache, finetune.cache_views)"
    return None


def too_few(labels: np.ndarray, num_classes: int, classes: list[str]) -> str | None:
    counts = np.bincount(labels, minlength=num_classes)
    if counts.min() < MIN_PER_CLASS:
        rare = classes[int(counts.argmin())]
        return f"class '{rare}' has {counts.min()} images in train + val ({MIN_PER_CLASS} needed)"
    return None
