"""The frozen bottom's outputs (features) per split, computed once and kept on disk; the top
trains on them for every epoch, since plain Keras would run the frozen bottom again for every
image of every epoch.

Features go to a float32 row file, written a chunk of FEATURE_CHUNK images at a time (RAM stays
bounded whatever the dataset's size). Without augmentation they are exact: training on them
gives the uncached model, up to float rounding. With augmentation, `views` augmented copies of
each training image are cached (view 0 is the image itself) and each epoch serves every image
in a random one of them (`tlcli.data.pipeline`).

An entry's key covers the bottom (its layers' configs and hashed weights), the decoded pixels
(the split's key), the views, the augmentation and the seed: anything else is a miss. The
stages use this module through `tlcli.train.core`; `tests/test_feature_cache.py` shows it at work.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import keras
import numpy as np

from tlcli.cache.cut import NetworkCut
from tlcli.cache.rows import RowWriter, open_array, read_rows
from tlcli.cache.store import cached_entry, mark_used
from tlcli.config import AugmentConfig
from tlcli.data.pipeline import inputs_only, make_dataset
from tlcli.data.stage_data import DecodedSplit, Progress, StageData
from tlcli.files import atomic_path, write_json

FEATURE_CHUNK = 1024  # images per predict() call

# A model and the features it starts from, per split: a cut lower in the network, whose
# cached features give this cut's for a fraction of the work (`tlcli.cache.prefix`).
Source = tuple[keras.Model, dict[str, DecodedSplit]]


def cached_features(
    cut: NetworkCut,
    data: StageData,
    *,
    views: int,
    augment: AugmentConfig | None,
    seed: int,
    batch_size: int,
    cache_dir: Path,
    tag: str,
    progress: Progress | None = None,
    names: tuple[str, ...] = ("train", "val"),
    source: Source | None = None,
) -> tuple[dict[str, DecodedSplit], bool]:
    """The bottom's outputs on the splits `names`, as splits the top trains on; (splits,
    whether every one was found in the cache).

    Stages ask for train, val and the split evaluate will score (which then runs only the top:
    `exact_cached_features`). The doctor asks for every split, under the finetune tag, so that
    it and finetune share the files. With `source`, the features are computed from the lower
    cut's instead of from the images: the same values.
    """
    out: dict[str, DecodedSplit] = {}
    reused_all = True
    bottom_digest = _bottom_digest(cut.bottom)
    for name, split in data.splits.items():
        if name not in names:
            continue
        array, reused = _feature_entry(
            cut.bottom,
            bottom_digest,
            split,
            data.num_classes,
            views=views if name == "train" else 1,
            augment=augment if name == "train" else None,
            seed=seed,
            batch_size=batch_size,
            path_prefix=cache_dir / f"features-{tag}-{name}",
            progress=progress,
            source=(source[0], source[1][name]) if source else None,
        )
        reused_all &= reused
        out[name] = dataclasses.replace(
            split, array=array, rows=np.arange(len(split)), reader=read_rows
        )
    return out, reused_all


def exact_cached_features(
    cut: NetworkCut, split: DecodedSplit, cache_dir: Path, tag: str
) -> np.ndarray | None:
    """The bottom's outputs on `split` when a stage tagged `tag` cached them un-augmented
    (exact: what the bottom computes now, up to float rounding), else None. Never computes."""
    key = _key(_bottom_digest(cut.bottom), split, 1, None, 0)
    return load_features(cache_dir / f"features-{tag}-{split.name}-{key}.npy")


def load_features(path: Path) -> np.ndarray | None:
    """The cached features at `path`, or None while they are missing or incomplete (no done
    marker)."""
    try:
        if not path.with_suffix(".json").is_file():
            return None
        array = open_array(path)
    except (OSError, ValueError):  # removed between the check and the open
        return None
    mark_used(path)
    return array


def _feature_entry(
    bottom: keras.Model,
    bottom_digest: str,
    split: DecodedSplit,
    num_classes: int,
    *,
    views: int,
    augment: AugmentConfig | None,
    seed: int,
    batch_size: int,
    path_prefix: Path,
    progress: Progress | None,
    source: tuple[keras.Model, DecodedSplit] | None = None,
) -> tuple[np.ndarray, bool]:
    key = _key(bottom_digest, split, views, augment, seed)
    path = path_prefix.with_name(f"{path_prefix.name}-{key}.npy")

    def compute() -> np.ndarray:
        """Run the bottom over the split (each view) into `path`, then its done marker."""
        feature_shape = tuple(bottom.output_shape[1:])
        shape = (views, len(split), *feature_shape) if views > 1 else (len(split), *feature_shape)
        tick = progress(f"Caching {path_prefix.name}", views * len(split)) if progress else None
        started = time.perf_counter()
        with atomic_path(path) as tmp, RowWriter(tmp, np.float32, shape) as array:
            for view in range(views):
                for chunk, start in enumerate(range(0, len(split), FEATURE_CHUNK)):
                    rows = slice(start, start + FEATURE_CHUNK)
                    model, part, view_augment = _chunk_input(
                        bottom, split, source, view, views, rows, augment
                    )
                    dataset = make_dataset(
                        part,
                        num_classes,
                        batch_size,
                        augment=view_augment,
                        seed=seed + 7919 * view + chunk,
                    )
                    outputs = model.predict(inputs_only(dataset), verbose=0)
                    array.write(view * len(split) + start, outputs)
                    if tick:
                        tick(len(part))
        seconds = round(time.perf_counter() - started, 2)
        write_json(path.with_suffix(".json"), {"shape": list(shape), "seconds": seconds})
        return open_array(path)

    return cached_entry(path, lambda: load_features(path), compute, f"{path_prefix.name}-")


def _chunk_input(bottom, split, source, view: int, views: int, rows: slice, augment):
    """What computes one chunk of one view: (model, its inputs, augmentation). The bottom over
    the images (augmented for view > 0), or the source model over the lower cut's features."""
    if source is None:
        part = dataclasses.replace(split, rows=split.rows[rows], labels=split.labels[rows])
        return bottom, part, augment if view > 0 else None
    model, below = source
    array = below.array[view] if views > 1 else below.array
    part = dataclasses.replace(below, array=array, rows=below.rows[rows], labels=below.labels[rows])
    return model, part, None


def _key(
    bottom_digest: str, split: DecodedSplit, views: int, augment: AugmentConfig | None, seed: int
) -> str:
    parts = {
        "bottom": bottom_digest,
        "split": split.key,
        "views": views,
        "augment": augment.model_dump() if augment is not None else None,
        # augmented views: their random draws, and how they are made from the seed (per batch)
        "seed": [seed, "per-batch"] if (augment is not None and views > 1) else None,
        "chunk": FEATURE_CHUNK,
    }
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _bottom_digest(bottom: keras.Model) -> str:
    """What the bottom computes: its input and output shapes, its layers' configs, its weights."""
    digest = hashlib.sha1()
    parts = {
        "input": list(bottom.input_shape[1:]),
        "output": list(bottom.output_shape[1:]),
        "layers": [_layer_signature(layer) for layer in bottom.layers],
    }
    digest.update(json.dumps(parts, sort_keys=True, default=str).encode())
    for weight in bottom.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()


def _layer_signature(layer) -> object:
    """A layer's config, or for a nested model the signatures of its layers."""
    if isinstance(layer, keras.Model):
        return [_layer_signature(inner) for inner in layer.layers]
    config = layer.get_config()
    config.pop("name", None)
    return [type(layer).__name__, config]
