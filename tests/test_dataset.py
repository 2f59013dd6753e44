"""Finding classes and files, carving splits, and the checks that stop a bad dataset early."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
from conftest import make_image_folder

from tlcli.cache.decoded_images import load_stage_data
from tlcli.config import DataConfig
from tlcli.data.folders import carve_splits, scan_folder
from tlcli.data.stage_data import find_splits
from tlcli.errors import DataError

pytestmark = pytest.mark.fast  # the edit loop's tier (tests/conftest.py)


def _assignment(folder, val=0.2, test=0.1, seed=3):
    splits = carve_splits(folder, val=val, test=test, seed=seed)
    return {folder.relative(p): name for name, split in splits.items() for p in split.paths}


def test_carved_splits_are_deterministic_and_disjoint(tmp_path):
    root = make_image_folder(tmp_path, {"train": 30})
    folder = scan_folder(root / "train")
    first = _assignment(folder)
    assert first == _assignment(scan_folder(root / "train"))
    assert len(first) == len(folder.files)  # every file in exactly one split
    counts = {name: list(first.values()).count(name) for name in ("train", "val", "test")}
    assert counts["val"] > 0 and counts["test"] > 0 and counts["train"] > counts["val"]
    assert _assignment(folder, seed=4) != first  # the seed decides


def test_adding_files_does_not_move_existing_ones(tmp_path):
    root = make_image_folder(tmp_path, {"train": 30})
    before = _assignment(scan_folder(root / "train"))
    make_image_folder(tmp_path / "more", {"train": 10}, seed=9)
    for path in (tmp_path / "more" / "train").rglob("*.*"):
        target = root / "train" / path.parent.name / f"new_{path.name}"
        shutil.copy(path, target)
    after = _assignment(scan_folder(root / "train"))
    assert len(after) == len(before) + 30
    assert all(after[name] == split for name, split in before.items())


def test_every_class_gets_a_validation_image(tmp_path):
    root = make_image_folder(tmp_path, {"train": 4})
    splits = carve_splits(scan_folder(root / "train"), val=0.05, test=0.0, seed=0)
    assert set(splits["val"].labels.tolist()) == {0, 1, 2}


def test_classes_that_differ_between_splits_are_an_error(tmp_path):
    root = make_image_folder(tmp_path, {"train": 3, "val": 2})
    shutil.rmtree(root / "val" / "cross")
    (root / "val" / "star").mkdir()
    (root / "val" / "star" / "a.png").write_bytes(b"x")
    data = DataConfig(train_dir=root / "train", val_dir=root / "val")
    with pytest.raises(DataError, match=r"lacks cross; has extra star"):
        find_splits(data, seed=0)


def test_empty_class_folder_is_an_error(tmp_path):
    root = make_image_folder(tmp_path, {"train": 3})
    (root / "train" / "empty").mkdir()
    with pytest.raises(DataError, match="class 'empty' has no files"):
        scan_folder(root / "train")


def test_folder_without_class_folders_is_an_error(tmp_path):
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.jpg").write_bytes(b"x")
    with pytest.raises(DataError, match="no class folders"):
        scan_folder(tmp_path / "flat")


def test_class_whose_images_are_all_unreadable_is_an_error(tmp_path):
    root = make_image_folder(tmp_path, {"train": 3})
    for path in (root / "train" / "cross").iterdir():
        path.write_bytes(b"garbage")
    data = DataConfig(train_dir=root / "train")
    with pytest.raises(DataError, match="no readable training images for class cross"):
        load_stage_data(data, (32, 32), 0, tmp_path / "cache", tmp_path)
    assert (tmp_path / "data_report.json").is_file()  # the report says which files


def test_decoded_cache_is_reused_and_rebuilt_when_files_change(tmp_path, monkeypatch):
    monkeypatch.setattr("tlcli.cache.store.STALE_SECONDS", -1)  # a replaced entry goes at once
    root = make_image_folder(tmp_path, {"train": 4})
    data = DataConfig(train_dir=root / "train", val_split=0.0)
    cache = tmp_path / "cache"
    target = root / "train" / "disc" / "000.jpg"

    def pixels_of(loaded, path):
        train = loaded.splits["train"]
        return np.array(train.array[train.rows[train.paths.index(path)]])

    first = load_stage_data(data, (32, 32), 0, cache, tmp_path)
    (array,) = cache.glob("*.npy")
    inode = array.stat().st_ino
    again = load_stage_data(data, (32, 32), 0, cache, tmp_path)
    assert array.stat().st_ino == inode  # reused, not decoded again (a rebuild is a new file)
    np.testing.assert_array_equal(pixels_of(first, target), pixels_of(again, target))

    before = pixels_of(first, target)
    target.write_bytes((root / "train" / "square" / "001.png").read_bytes())
    changed = load_stage_data(data, (32, 32), 0, cache, tmp_path)
    assert len(list(cache.glob("*.npy"))) == 1  # the stale array was replaced
    assert not np.array_equal(pixels_of(changed, target), before)


def test_a_shared_cache_keeps_entries_in_use_and_drops_old_ones(tmp_path):
    """Two runs sharing a cache at two image sizes do not delete each other's decoded images;
    an entry nobody used for STALE_SECONDS goes when its folder is decoded again."""
    import os

    from tlcli.cache.store import STALE_SECONDS

    root = make_image_folder(tmp_path, {"train": 4})
    data = DataConfig(train_dir=root / "train", val_split=0.0)
    cache = tmp_path / "cache"
    load_stage_data(data, (32, 32), 0, cache, tmp_path)
    load_stage_data(data, (40, 40), 0, cache, tmp_path)
    assert len(list(cache.glob("*.npy"))) == 2  # both sizes kept: both may be in use
    small = next(p for p in cache.glob("*.npy") if np.load(p, mmap_mode="r").shape[1] == 32)
    stamp = small.stat().st_mtime
    load_stage_data(data, (32, 32), 0, cache, tmp_path)  # reading an entry marks it used
    assert small.stat().st_mtime >= stamp
    old = time.time() - STALE_SECONDS - 60
    for path in cache.glob(f"{small.stem}.*"):
        os.utime(path, (old, old))
    load_stage_data(data, (48, 48), 0, cache, tmp_path)
    shapes = sorted(np.load(p, mmap_mode="r").shape[1] for p in cache.glob("*.npy"))
    assert shapes == [40, 48]  # the unused 32 px entry went, the recent 40 px one stayed
