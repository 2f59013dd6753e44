"""Whether a frozen stage trains on cached features, and where its network is cut.

The bottom runs once per cached example with the cache, against once per example per epoch
without it; `plan_cache` weighs the two (with `cache: auto`), the disk the entry would take,
and augmentation (cached views, or none).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from tlcli.cache.cut import NetworkCut, cut_at_head, cut_in_base
from tlcli.config import DataConfig, FinetuneConfig, UnfreezeConfig
from tlcli.console import plural
from tlcli.data.stage_data import StageData

DEFAULT_VIEWS = 4  # `cache: on` with augmentation and no cache_views
# A cut inside the base caches feature maps, not vectors: refuse above this size on disk.
PREFIX_CACHE_LIMIT_BYTES = 16 * 2**30


@dataclass
class CachePlan:
    """Whether a frozen stage trains on cached features, and why (for the console)."""

    cut: NetworkCut | None
    views: int
    reason: str


def plan_cache(
    stage: str,
    model: keras.Model,
    stage_cfg: FinetuneConfig | UnfreezeConfig,
    data_cfg: DataConfig,
    data: StageData,
    cache_dir: Path,
    *,
    needed: bool = False,
) -> CachePlan:
    """Decide between cached and plain training for a finetune or unfreeze stage (`needed`:
    the stage works on the cached features, the head search, so auto caches whatever the
    epochs)."""
    if stage_cfg.cache == "off":
        return CachePlan(None, 1, f"feature cache off: {stage}.cache is off")
    augmented = data_cfg.augment.enabled
    views = 1
    if augmented:
        views = stage_cfg.cache_views or (DEFAULT_VIEWS if stage_cfg.cache == "on" else 0)
        if not views:
            return CachePlan(
                None,
                1,
                f"feature cache off: augmentation is on and {stage}.cache_views is not set "
                "(set it, e.g. to 4, to cache augmented views and train much faster)",
            )
    cut = cut_at_head(model) if stage == "finetune" else cut_in_base(model)
    if cut is None:
        return CachePlan(None, 1, "feature cache off: no frozen block below the trained layers")
    train = len(data.splits["train"])
    val = len(data.splits["val"]) if "val" in data.splits else 0
    # With auto, cache only when the bottom then runs fewer times.
    cached_passes, plain_passes = views * train + val, stage_cfg.epochs * (train + val)
    if stage_cfg.cache == "auto" and cached_passes >= plain_passes and not needed:
        return CachePlan(
            None, 1, f"feature cache off: {plural(stage_cfg.epochs, 'epoch')} would not repay it"
        )
    size = 4 * int(np.prod(cut.bottom.output_shape[1:])) * cached_passes
    free = shutil.disk_usage(cache_dir if cache_dir.exists() else cache_dir.parent).free
    if size > PREFIX_CACHE_LIMIT_BYTES or size > free // 2:
        return CachePlan(None, 1, f"feature cache off: it would take {size / 2**30:.1f} GB")
    kind = f"{views} views" if views > 1 else "exact"
    return CachePlan(cut, views, f"feature cache on ({kind}): frozen up to {cut.at}")
