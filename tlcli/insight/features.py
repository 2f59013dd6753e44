"""The frozen base's pooled features of every image of the target data, for the doctor.

They come from the run's own feature cache (`tlcli.train.feature_cache`): the bottom is built
exactly as `finetune` builds it (base, weights, preprocessing, pooling, frozen), so its cache key
is finetune's, and the train and val files are shared both ways: a doctor after finetune reuses
them, a finetune after the doctor too. With augmentation finetune caches augmented views, so
the doctor keeps its own files (tag `doctor`) instead of replacing finetune's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tlcli.config import Config, HeadConfig
from tlcli.console import Console
from tlcli.data.stage_data import StageData
from tlcli.errors import ConfigError, Remedy
from tlcli.files import read_rows
from tlcli.rundir import RunDir
from tlcli.runtime.distribute import write_path
from tlcli.runtime.scope import model_scope
from tlcli.train.prepare import load_data, start_tensorflow


@dataclass
class DatasetFeatures:
    """Every readable image of the target data, in split order, with its feature vector."""

    classes: list[str]
    paths: list[Path]
    split_names: np.ndarray  # str per image: train, val or test
    labels: np.ndarray  # int per image
    features: np.ndarray  # float32 (images, features)
    data: StageData  # the decoded splits (pixels for thumbnails and hashes) and data report
    seconds: dict[str, float] = field(default_factory=dict)
    reused: bool = False  # every feature file came from the cache

    def __len__(self) -> int:
        return len(self.paths)

    def pixels(self, index: int) -> np.ndarray:
        """The decoded uint8 image of row `index`."""
        name = self.split_names[index]
        split = self.data.splits[name]
        return np.asarray(split.pixels[split.rows[index - self._offsets[name]]])

    @property
    def _offsets(self) -> dict[str, int]:
        offsets, start = {}, 0
        for name, split in self.data.splits.items():
            offsets[name] = start
            start += len(split)
        return offsets


def target_features(cfg: Config, run: RunDir, console: Console) -> DatasetFeatures:
    """Decode the target data (the run's image cache), then the bottom's features (its cache)."""
    started = time.perf_counter()
    start_tensorflow(cfg)
    data = load_data(cfg, run, "finetune", console, require_trainable=False)
    decoded_at = time.perf_counter()
    # Keras after start_tensorflow(): `tlcli doctor` names a missing extra loading no TensorFlow
    from tlcli.model.split import SplitModel
    from tlcli.train.feature_cache import cache_split_outputs

    with model_scope(cfg.run):
        bottom = frozen_bottom(cfg, run, data.num_classes)
    with model_scope(cfg.run), console.progress() as progress:
        cached, reused = cache_split_outputs(
            SplitModel(bottom, bottom, "head_pool"),
            data,
            views=1,
            augment=None,
            seed=cfg.seed,
            batch_size=cfg.data.batch_size,
            cache_dir=write_path(run.cache_dir),
            tag="doctor" if cfg.data.augment.enabled else "finetune",
            progress=progress,
            names=tuple(data.splits),
        )
    names = list(data.splits)
    # Read from the files, not through their maps: the features would count twice in RSS.
    features = np.concatenate([read_rows(cached[n].pixels) for n in names])
    features = features.astype(np.float32, copy=False)
    return DatasetFeatures(
        classes=data.classes,
        paths=[p for n in names for p in data.splits[n].paths],
        split_names=np.concatenate([[n] * len(data.splits[n]) for n in names]).astype(str),
        labels=np.concatenate([data.splits[n].labels for n in names]).astype(np.int64),
        features=features.reshape(len(features), -1),
        data=data,
        seconds={
            "data": round(decoded_at - started, 2),
            "features": round(time.perf_counter() - decoded_at, 2),
        },
        reused=reused,
    )


def frozen_bottom(cfg: Config, run: RunDir, num_classes: int):
    """image -> preprocessing -> frozen base -> pooling, as finetune builds and caches it.

    The head is left at its defaults: it is not part of the bottom, nor of the cache key.
    """
    # Keras after start_tensorflow(): `tlcli doctor` names a missing extra loading no TensorFlow
    from tlcli.model.freezing import freeze_base
    from tlcli.model.network import build_classifier
    from tlcli.model.split import split_at_head
    from tlcli.model.weights import build_base_with_weights

    weights = cfg.model.weights
    if weights == "pretrain":
        if not run.is_finished("pretrain"):
            raise ConfigError(
                f"{run.path}: model.weights is pretrain, and this run has no finished pretrain "
                "stage to take the base from",
                remedies=(Remedy("train:pretrain"),),
            )
        weights = str(run.model_path("pretrain"))
    base = build_base_with_weights(cfg.model.base, cfg.image_size, weights)
    model = build_classifier(
        base, num_classes, HeadConfig(), cfg.model.pooling, cfg.model.base, base_training=False
    )
    freeze_base(model)
    return split_at_head(model).bottom
