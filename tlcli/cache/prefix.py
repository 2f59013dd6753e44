"""One pass of the frozen prefix for finetune and unfreeze: when unfreeze will train on the
cached outputs of a frozen prefix of the base, finetune caches them first, where unfreeze finds
them, and computes its own features from them. The prefix, most of the base, then runs once for
both stages.
"""

from __future__ import annotations

import keras

from tlcli.cache.cut import top_up_to
from tlcli.cache.features import Source, cached_features
from tlcli.cache.plan import plan_cache
from tlcli.config import AugmentConfig, Config
from tlcli.data.stage_data import Progress, StageData
from tlcli.errors import ConfigError
from tlcli.model.freezing import unfreeze_top
from tlcli.model.network import find_base


def shared_prefix(
    cfg: Config,
    model: keras.Model,
    data: StageData,
    *,
    views: int,
    augment: AugmentConfig | None,
    progress: Progress | None = None,
    names: tuple[str, ...] = ("train", "val"),
) -> Source | None:
    """For the finetune stage: the prefix outputs unfreeze will train on, cached now under its
    tag and key, and the model from the prefix up to head_pool, for `cached_features(source=...)`.
    None when unfreeze caches nothing, or other views than finetune."""
    if cfg.unfreeze is None or cfg.unfreeze.train_bn:  # train_bn rebuilds the unfreeze model
        return None
    base = find_base(model)
    try:
        unfreeze_top(model, cfg.unfreeze, cfg.model.base)
        plan = plan_cache("unfreeze", model, cfg.unfreeze, cfg.data, data, cfg.cache_path)
    except ConfigError:  # a wrong unfreeze selector: the unfreeze stage will say so
        return None
    finally:
        base.trainable = False  # as freeze_base left it: every layer of the base frozen
    if plan.cut is None or plan.views != views:
        return None
    prefix, _ = cached_features(
        plan.cut,
        data,
        views=views,
        augment=augment,
        seed=cfg.seed,
        batch_size=cfg.data.batch_size,
        cache_dir=cfg.cache_path,
        tag="unfreeze",
        progress=progress,
        names=names,
    )
    return top_up_to(plan.cut, "head_pool"), prefix
