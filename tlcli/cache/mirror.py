"""The frozen bottom's outputs on the mirror images: what the mirror branch of the saved model's
test-time augmentation feeds the top, cached like any other features.

The head search's mirror candidates train on them (train and val), and evaluate scores a stage
saved with mirror TTA on them (the split it scores), running the top alone instead of the whole
model twice.
"""

from __future__ import annotations

from pathlib import Path

import keras

from tlcli.cache.cut import NetworkCut
from tlcli.cache.features import cached_features
from tlcli.data.stage_data import DecodedSplit, Progress, StageData
from tlcli.model.tta import mirrored


def cached_mirror_features(
    bottom: keras.Model,
    top: keras.Model,
    data: StageData,
    *,
    batch_size: int,
    cache_dir: Path,
    tag: str,
    names: tuple[str, ...],
    progress: Progress | None = None,
) -> dict[str, DecodedSplit]:
    """The bottom's outputs on the mirror images of the splits `names`, cached under
    `{tag}-mirror`."""
    cut = NetworkCut(mirrored(bottom, name="mirrored_bottom"), top, "mirror")
    splits, _ = cached_features(
        cut, data, views=1, augment=None, seed=0, batch_size=batch_size,
        cache_dir=cache_dir, tag=f"{tag}-mirror", progress=progress, names=names,
    )  # fmt: skip
    return splits
