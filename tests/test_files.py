"""Files tlcli writes: whole or not at all, and readable by whoever the user's umask allows."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from conftest import config_dict

from tlcli.cache.rows import RowWriter, open_array, read_rows
from tlcli.files import atomic_dir, atomic_path, write_text


@contextlib.contextmanager
def umask(mask: int):
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def modes(root: Path) -> dict[str, int]:
    """Permission bits of every file and folder under `root`, by relative path."""
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*")}


UMASKS = [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)]  # (umask, file mode, folder mode)


@pytest.mark.parametrize(("mask", "file_mode", "folder_mode"), UMASKS)
@pytest.mark.fast
def test_atomic_files_and_folders_follow_the_umask(tmp_path, mask, file_mode, folder_mode):
    with umask(mask):
        write_text(tmp_path / "labels.txt", "cat\n")
        with atomic_path(tmp_path / "model.weights.h5") as tmp:
            tmp.write_bytes(b"weights")
        with atomic_dir(tmp_path / "export") as folder:
            (folder / "export.json").write_text("{}")
    assert modes(tmp_path) == {
        "labels.txt": file_mode,
        "model.weights.h5": file_mode,
        "export": folder_mode,
        "export/export.json": file_mode,
    }


def test_a_runs_artefacts_follow_the_umask_they_were_written_under(trained_run, cli, tmp_path):
    """The shared run was trained in this process, under its umask (022 in CI)."""
    mask = os.umask(0o022)
    os.umask(mask)
    export, predictions = tmp_path / "export", tmp_path / "predictions.csv"
    assert cli("export", trained_run, "--format", "keras", "-o", export, "-q").exit_code == 0
    images = trained_run.parent.parent / "data" / "test"
    assert cli("predict", trained_run, images, "-o", predictions, "-q").exit_code == 0
    _check_modes(trained_run, RUN_FILES, 0o666 & ~mask, 0o777 & ~mask)
    _check_modes(export, EXPORT_FILES, 0o666 & ~mask, 0o777 & ~mask)
    assert stat.S_IMODE(predictions.stat().st_mode) == 0o666 & ~mask


@pytest.mark.slow
@pytest.mark.parametrize(("mask", "file_mode", "folder_mode"), UMASKS)
def test_every_artefact_of_a_run_follows_the_umask(
    image_folder, write_config, cli, tmp_path, mask, file_mode, folder_mode
):
    path = write_config(config_dict(image_folder, finetune={"epochs": 1, "cache": "on"}))
    run = image_folder.parent / "runs" / "t"
    predictions = tmp_path / "predictions.csv"
    with umask(mask):
        assert cli("run", path, "-q").exit_code == 0
        assert cli("export", run, "--format", "keras", "-q").exit_code == 0
        assert cli("predict", run, image_folder / "test", "-o", predictions, "-q").exit_code == 0
    _check_modes(run, RUN_FILES, file_mode, folder_mode)
    _check_modes(run / "export" / "finetune-keras", EXPORT_FILES, file_mode, folder_mode)
    assert any(name.startswith("cache/features-") for name in modes(run))
    assert stat.S_IMODE(predictions.stat().st_mode) == file_mode


RUN_FILES = (
    "config.yaml",
    "labels.txt",
    "finetune/model.keras",
    "finetune/labels.txt",
    "finetune/stage.json",
    "finetune/history.csv",
    "finetune/metrics.json",
    "finetune/curves.png",
)
EXPORT_FILES = ("model.keras", "labels.txt", "export.json")


def _check_modes(root: Path, names: tuple[str, ...], file_mode: int, folder_mode: int) -> None:
    """`names` are there, and every file and folder under `root` has the modes given."""
    written = modes(root)
    assert {name: written.get(name) for name in names} == dict.fromkeys(names, file_mode)
    files = {name: mode for name, mode in written.items() if (root / name).is_file()}
    assert set(files.values()) == {file_mode}, files
    folders = {name: mode for name, mode in written.items() if (root / name).is_dir()}
    assert set(folders.values()) <= {folder_mode}, folders


@pytest.mark.fast
def test_rows_read_from_a_cache_are_its_rows_in_any_order_and_part(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.integers(0, 255, (3, 50, 4, 4, 3), dtype=np.uint8)  # (views, rows, sample)
    with RowWriter(tmp_path / "a.npy", np.uint8, values.shape) as writer:
        for view in range(3):
            writer.write(view * 50, values[view, :30])  # rows 30-49 never written: zeros
            writer.write(view * 50 + 30, values[view, 30:])
    mapped = open_array(tmp_path / "a.npy")
    np.testing.assert_array_equal(np.asarray(mapped), values)
    index = np.sort(rng.choice(150, 40, replace=False))
    flat = values.reshape(150, 4, 4, 3)
    np.testing.assert_array_equal(read_rows(mapped, index, 3), flat[index])
    np.testing.assert_array_equal(read_rows(mapped[2], [49, 0, 7], 3), values[2, [49, 0, 7]])
    with pytest.raises(IndexError):
        read_rows(mapped[2], [50], 3)


def rss_file_kb() -> int:
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(fields["RssFile"].split()[0])


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc")
@pytest.mark.fast
def test_reading_a_cache_in_batches_leaves_its_pages_out_of_the_processs_rss(tmp_path):
    rows, row_shape = 512, (64, 64, 3)  # 6 MB
    with RowWriter(tmp_path / "cache.npy", np.uint8, (rows, *row_shape)) as writer:
        for first in range(0, rows, 64):
            writer.write(first, np.full((64, *row_shape), first % 251, np.uint8))
    mapped = open_array(tmp_path / "cache.npy")
    before = rss_file_kb()
    for first in range(0, rows, 32):
        batch = read_rows(mapped, np.arange(first, first + 32), 3)
        assert batch[0, 0, 0, 0] == (first // 64 * 64) % 251
    after_reads = rss_file_kb()
    _ = int(np.asarray(mapped, np.int64).sum())  # the same pass through the map, to compare
    after_map = rss_file_kb()
    assert after_reads - before < 1024  # KB
    assert after_map - after_reads > 5 * 1024
