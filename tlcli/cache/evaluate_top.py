"""The shortcut for evaluate after a cached stage: the stage's trained top, saved beside
model.keras, scores the bottom's cached outputs on the split, instead of the whole model
running on the images.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import keras
import numpy as np

from tlcli.cache.features import load_features
from tlcli.data.stage_data import DecodedSplit
from tlcli.files import atomic_path
from tlcli.rundir import CACHED_TOP

TOP_FILE = CACHED_TOP  # a cached stage's trained top, for evaluate


def keep_top_for_evaluate(
    stage_dir: Path,
    model_path: Path,
    top: keras.Model,
    splits: dict[str, DecodedSplit],
    views: int,
    mirrors: dict[str, DecodedSplit] | None = None,
) -> dict:
    """After a cached stage: save its trained top beside model.keras (TOP_FILE), and return
    what `cached_top` needs to score a split without loading the whole model: the hash of
    model.keras and, per split cached exactly (no views), its features file and pixels key.

    `mirrors` (None: the stage saved no TTA) holds the mirror images' features of the splits
    that have them: with mirror TTA in model.keras, only those splits can be scored on the cache.
    """
    with atomic_path(stage_dir / TOP_FILE) as tmp:
        top.save(tmp)
    exact = {
        name: {"file": str(split.array.filename), "key": split.key}
        for name, split in splits.items()
        if isinstance(split.array, np.memmap) and (name != "train" or views == 1)
    }
    for name, mirror in (mirrors or {}).items():
        if name in exact and isinstance(mirror.array, np.memmap):
            exact[name]["mirror_file"] = str(mirror.array.filename)
    return {"model_sha1": file_sha1(model_path), "tta": mirrors is not None, "exact_splits": exact}


def cached_top(
    stage_dir: Path, record: dict, model_path: Path, split: DecodedSplit
) -> tuple[keras.Model, list[np.ndarray]] | None:
    """(the stage's top, the bottom's outputs on `split`) when its stage cached them exactly
    and model.keras is still the model it saved (`keep_top_for_evaluate`), else None. With
    mirror TTA the outputs are two: the image's and its mirror image's (their predictions are
    averaged, as the saved model's `tta_mean` does)."""
    entry = record.get("exact_splits", {}).get(split.name)
    if not entry or entry["key"] != split.key or not (stage_dir / TOP_FILE).is_file():
        return None
    files = [entry["file"], *([entry.get("mirror_file")] if record.get("tta") else [])]
    if None in files or record.get("model_sha1") != file_sha1(model_path):  # calibrated since?
        return None
    outputs = [load_features(Path(file)) for file in files]
    if any(features is None or len(features) != len(split) for features in outputs):
        return None
    return keras.models.load_model(stage_dir / TOP_FILE, compile=False), outputs


def file_sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with path.open("rb") as file:
        while chunk := file.read(2**22):
            digest.update(chunk)
    return digest.hexdigest()
