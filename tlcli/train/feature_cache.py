"""Run the frozen bottom of a network once over the data, keep its outputs, train on them.

With a frozen base, plain Keras runs the whole base forward for every image in every epoch
although its output never changes; that pass is nearly all the work of a frozen stage. Here it
runs once per image (per augmented view), the outputs go to a float32 array on disk, written a
chunk and read a batch at a time (RAM use stays bounded by one chunk of FEATURE_CHUNK images,
whatever the dataset size), and the trainable top trains on them for every epoch.

Without augmentation this is exact: the same model as uncached training, up to float rounding.
With augmentation, `views` augmented copies of each training image are cached (view 0 is the
image itself) and each epoch serves every image in a random one of its views.

The cache key covers the bottom's weights (hashed), its layers' configs, the decoded pixels
(file list, sizes, mtimes, image size), the rows of the split, the views, the augmentation and
the seed: anything else is a miss. Runs and processes may share the cache folder (`cache_dir`):
one process computes an entry while the others wait for it, and an entry of another key is
deleted only once nobody used it for a while (`tlcli.files.remove_stale`).
`tests/test_feature_cache.py` shows it at work; the stages use it through `tlcli.train.core`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from tlcli.config import AugmentConfig, Config, DataConfig
from tlcli.console import plural
from tlcli.data.pipeline import inputs_only, make_dataset
from tlcli.data.stage_data import DecodedSplit, StageData
from tlcli.errors import ConfigError
from tlcli.files import RowWriter, atomic_path, cached_entry, mark_used, open_array, write_json
from tlcli.model.freezing import unfreeze_top
from tlcli.model.network import find_base
from tlcli.model.split import SplitModel, split_at_head, split_in_base, top_up_to
from tlcli.rundir import CACHED_TOP

FEATURE_CHUNK = 1024  # images per predict() call
DEFAULT_VIEWS = 4  # `cache: on` with augmentation and no cache_views
# A cut inside the base caches feature maps, not vectors: refuse above this size on disk.
PREFIX_CACHE_LIMIT_BYTES = 16 * 2**30
TOP_FILE = CACHED_TOP  # a cached stage's trained top, for evaluate


@dataclass
class CachePlan:
    """Whether a frozen stage trains on cached outputs, and why (for the console)."""

    split: SplitModel | None
    views: int
    reason: str


def plan_cache(
    stage: str,
    model: keras.Model,
    stage_cfg,
    data_cfg: DataConfig,
    data: StageData,
    cache_dir: Path,
    *,
    needed: bool = False,
) -> CachePlan:
    """Decide between cached and plain training for a finetune or unfreeze stage (`needed`:
    the stage works on the cached outputs, the head search, so auto caches whatever the epochs)."""
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
    split = split_at_head(model) if stage == "finetune" else split_in_base(model)
    if split is None:
        return CachePlan(None, 1, "feature cache off: no frozen block below the trained layers")
    train = len(data.splits["train"])
    val = len(data.splits["val"]) if "val" in data.splits else 0
    # The bottom runs once per cached example, against once per example per epoch without
    # the cache: with auto, cache only when that is fewer passes.
    cached_passes, plain_passes = views * train + val, stage_cfg.epochs * (train + val)
    if stage_cfg.cache == "auto" and cached_passes >= plain_passes and not needed:
        return CachePlan(
            None, 1, f"feature cache off: {plural(stage_cfg.epochs, 'epoch')} would not repay it"
        )
    size = 4 * int(np.prod(split.bottom.output_shape[1:])) * cached_passes
    free = shutil.disk_usage(cache_dir if cache_dir.exists() else cache_dir.parent).free
    if size > PREFIX_CACHE_LIMIT_BYTES or size > free // 2:
        return CachePlan(None, 1, f"feature cache off: it would take {size / 2**30:.1f} GB")
    kind = f"{views} views" if views > 1 else "exact"
    return CachePlan(split, views, f"feature cache on ({kind}): frozen up to {split.cut}")


def cache_split_outputs(
    split_model: SplitModel,
    data: StageData,
    *,
    views: int,
    augment: AugmentConfig | None,
    seed: int,
    batch_size: int,
    cache_dir: Path,
    tag: str,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
    names: tuple[str, ...] = ("train", "val"),
    source: tuple[keras.Model, dict[str, DecodedSplit]] | None = None,
) -> tuple[dict[str, DecodedSplit], bool]:
    """The bottom's outputs for the splits `names`, as splits the top trains on; (splits, reused).

    Stages ask for train, val and the split evaluate will score (which then runs only the top
    on the cached outputs: `exact_cached_outputs`). The doctor asks for every split, under the
    finetune tag, so that it and finetune share the files. With `source` (a model and the
    cached outputs of a lower cut, per split: `shared_prefix`), the outputs are computed from
    those instead of from the images: the same values, for a fraction of the work.
    """
    out: dict[str, DecodedSplit] = {}
    reused_all = True
    bottom_digest = _bottom_digest(split_model.bottom)
    for name, split in data.splits.items():
        if name not in names:
            continue
        split_views = views if name == "train" else 1
        array, reused = _cached_outputs(
            split_model.bottom,
            bottom_digest,
            split,
            data.num_classes,
            views=split_views,
            augment=augment if name == "train" else None,
            seed=seed,
            batch_size=batch_size,
            path_prefix=cache_dir / f"features-{tag}-{name}",
            progress=progress,
            source=(source[0], source[1][name]) if source else None,
        )
        reused_all &= reused
        out[name] = dataclasses.replace(split, pixels=array, rows=np.arange(len(split)))
    return out, reused_all


def cache_mirror_outputs(
    bottom: keras.Model,
    top: keras.Model,
    data: StageData,
    *,
    batch_size: int,
    cache_dir: Path,
    tag: str,
    names: tuple[str, ...],
    progress=None,
) -> dict[str, DecodedSplit]:
    """The bottom's outputs for the mirror images of the splits `names`, cached under
    `{tag}-mirror`: what flip TTA's mirror branch feeds `top`, for the head search (train and
    val) and for evaluate after a stage saved with TTA (the split it scores)."""
    from tlcli.model.tta import mirrored

    split = SplitModel(mirrored(bottom, name="mirrored_bottom"), top, "mirror")
    splits, _ = cache_split_outputs(
        split, data, views=1, augment=None, seed=0, batch_size=batch_size,
        cache_dir=cache_dir, tag=f"{tag}-mirror", progress=progress, names=names,
    )  # fmt: skip
    return splits


def shared_prefix(
    cfg: Config,
    model: keras.Model,
    data: StageData,
    *,
    views: int,
    augment: AugmentConfig | None,
    progress=None,
    names: tuple[str, ...] = ("train", "val"),
) -> tuple[keras.Model, dict[str, DecodedSplit]] | None:
    """For the finetune stage: when unfreeze will train on cached outputs of a frozen prefix of
    this base, cache them now, where unfreeze finds them (its tag, its key), and return (the
    model from the prefix up to head_pool, the prefix outputs per split) for
    `cache_split_outputs(source=...)`. The frozen prefix, most of the base, then runs once for
    both stages. None when unfreeze caches nothing, or other views than finetune."""
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
    if plan.split is None or plan.views != views:
        return None
    prefix, _ = cache_split_outputs(
        plan.split,
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
    return top_up_to(plan.split, "head_pool"), prefix


def _cached_outputs(
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
    progress,
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

    return cached_entry(path, lambda: _load_cached(path), compute, f"{path_prefix.name}-")


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
    model.keras and, per split cached exactly (no views), its outputs file and pixels key.

    `mirrors` (None: the stage saved no TTA) holds the mirror images' outputs of the splits
    that have them: with flip TTA in model.keras, only those splits can be scored on the cache.
    """
    with atomic_path(stage_dir / TOP_FILE) as tmp:
        top.save(tmp)
    exact = {
        name: {"file": str(split.pixels.filename), "key": split.key}
        for name, split in splits.items()
        if isinstance(split.pixels, np.memmap) and (name != "train" or views == 1)
    }
    for name, mirror in (mirrors or {}).items():
        if name in exact and isinstance(mirror.pixels, np.memmap):
            exact[name]["mirror_file"] = str(mirror.pixels.filename)
    return {"model_sha1": file_sha1(model_path), "tta": mirrors is not None, "exact_splits": exact}


def cached_top(
    stage_dir: Path, record: dict, model_path: Path, split: DecodedSplit
) -> tuple[keras.Model, list[np.ndarray]] | None:
    """(the stage's top, the bottom's outputs on `split`) when its stage cached them exactly
    and model.keras is still the model it saved (`keep_top_for_evaluate`), else None. With
    flip TTA the outputs are two: the image's and its mirror image's (their predictions are
    averaged, as the saved model's `tta_mean` does)."""
    entry = record.get("exact_splits", {}).get(split.name)
    if not entry or entry["key"] != split.key or not (stage_dir / TOP_FILE).is_file():
        return None
    files = [entry["file"], *([entry.get("mirror_file")] if record.get("tta") else [])]
    if None in files or record.get("model_sha1") != file_sha1(model_path):  # calibrated since?
        return None
    outputs = [_load_cached(Path(file)) for file in files]
    if any(features is None or len(features) != len(split) for features in outputs):
        return None
    return keras.models.load_model(stage_dir / TOP_FILE, compile=False), outputs


def file_sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with path.open("rb") as file:
        while chunk := file.read(2**22):
            digest.update(chunk)
    return digest.hexdigest()


def _chunk_input(bottom, split, source, view: int, views: int, rows: slice, augment):
    """What computes one chunk of one view: (model, its inputs, augmentation). The bottom over
    the images (augmented for view > 0), or the source model over the lower cut's outputs."""
    if source is None:
        part = dataclasses.replace(split, rows=split.rows[rows], labels=split.labels[rows])
        return bottom, part, augment if view > 0 else None
    model, below = source
    pixels = below.pixels[view] if views > 1 else below.pixels
    part = dataclasses.replace(
        below, pixels=pixels, rows=below.rows[rows], labels=below.labels[rows]
    )
    return model, part, None


def exact_cached_outputs(
    split_model: SplitModel, split: DecodedSplit, cache_dir: Path, tag: str
) -> np.ndarray | None:
    """The bottom's outputs for `split` when a stage tagged `tag` cached them un-augmented
    (exact: what the bottom computes now, up to float rounding), else None. Never computes."""
    key = _key(_bottom_digest(split_model.bottom), split, 1, None, 0)
    return _load_cached(cache_dir / f"features-{tag}-{split.name}-{key}.npy")


def _load_cached(path: Path) -> np.ndarray | None:
    """The cached outputs, or None while they are missing or incomplete (no done marker)."""
    try:
        if not path.with_suffix(".json").is_file():
            return None
        array = open_array(path)
    except (OSError, ValueError):  # removed between the check and the open
        return None
    mark_used(path)
    return array


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
