"""`tlcli predict`: real images through a real trained run, every output format, every source."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import words
from PIL import Image

from tlcli.data.images import decode_image
from tlcli.serve.predict import expand_images, iter_predictions, predict_images
from tlcli.serve.predictor import Predictor

LABELS = ["cross", "disc", "square"]


def data_root(run: Path) -> Path:
    return run.parent.parent / "data"


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 not a whole jpeg")
    return path


def by_path(items: list[dict]) -> dict[str, dict]:
    return {item["path"]: item for item in items}


def test_folder_glob_and_corrupt_file_as_csv_and_json(trained_run, cli, broken, tmp_path):
    data = data_root(trained_run)
    folder, pattern = data / "val" / "disc", str(data / "test" / "*" / "000.*")
    expected = [*sorted(folder.iterdir()), *sorted(data.glob("test/*/000.*")), broken]
    output = tmp_path / "out" / "predictions.csv"
    result = cli("predict", trained_run, folder, pattern, broken, "--top-k", "2", "-o", output)
    assert result.exit_code == 0, result.output
    assert "1 of 8 image(s) could not be read" in words(result.output)

    rows = list(csv.DictReader(output.open()))
    assert list(rows[0]) == ["path", "rank", "label", "probability", "error"]
    assert list(dict.fromkeys(row["path"] for row in rows)) == [str(p) for p in expected]
    for path in expected[:-1]:
        ranked = [row for row in rows if row["path"] == str(path)]
        assert [row["rank"] for row in ranked] == ["1", "2"]
        assert all(row["label"] in LABELS and row["error"] == "" for row in ranked)
        assert float(ranked[0]["probability"]) >= float(ranked[1]["probability"]) > 0
    (error_row,) = [row for row in rows if row["path"] == str(broken)]
    assert error_row["label"] == "" and error_row["error"]

    as_json = cli("predict", trained_run, folder, pattern, broken, "--format", "json", "-q")
    assert as_json.exit_code == 0, as_json.output
    items = json.loads(as_json.stdout)
    assert [item["path"] for item in items] == [str(p) for p in expected]
    assert set(items[-1]) == {"path", "error"}
    assert all(len(item["predictions"]) == 3 for item in items[:-1])

    as_csv = cli("predict", trained_run, folder, "--format", "csv")
    assert as_csv.exit_code == 0
    assert len(list(csv.DictReader(io.StringIO(as_csv.stdout)))) == 4 * 3, "stdout is pure CSV"


def test_probabilities_are_the_models_on_the_training_decoder(trained_run, cli):
    images = sorted((data_root(trained_run) / "test").rglob("*.*"))
    result = cli("predict", trained_run, *images, "--format", "json", "--batch-size", "5")
    assert result.exit_code == 0, result.output
    model = keras.models.load_model(trained_run / "finetune" / "model.keras", compile=False)
    pixels = np.stack([decode_image(path, (32, 32)).pixels for path in images])
    expected = model.predict(pixels.astype(np.float32), verbose=0)
    items = json.loads(result.stdout)
    assert len(items) == len(images) == 12
    for item, row in zip(items, expected, strict=True):
        found = {p["label"]: p["probability"] for p in item["predictions"]}
        np.testing.assert_allclose([found[label] for label in LABELS], row, atol=1e-5)
        assert item["predictions"][0]["label"] == LABELS[int(row.argmax())]


def test_run_dir_stage_dir_and_bare_model_agree(trained_run, cli, tmp_path):
    image = str(data_root(trained_run) / "val" / "square" / "000.jpg")
    bare = tmp_path / "somewhere" / "model.keras"
    bare.parent.mkdir()
    shutil.copy(trained_run / "finetune" / "model.keras", bare)
    outputs = {}
    for name, target, extra in [
        ("run", trained_run, []),
        ("run --stage", trained_run, ["--stage", "finetune"]),
        ("stage dir", trained_run / "finetune", []),
        ("model.keras", trained_run / "finetune" / "model.keras", []),
        ("bare", bare, []),
    ]:
        result = cli("predict", target, image, "--format", "json", *extra)
        assert result.exit_code == 0, f"{name}: {result.output}"
        outputs[name] = json.loads(result.stdout)[0]["predictions"]
    assert "labels are class indices" in words(result.output)
    assert (
        outputs["run"] == outputs["run --stage"] == outputs["stage dir"] == outputs["model.keras"]
    )
    for named, indexed in zip(outputs["run"], outputs["bare"], strict=True):
        assert named["label"] == LABELS[int(indexed["label"])]
        assert named["probability"] == indexed["probability"]


def test_table_on_the_terminal_and_usage_errors(trained_run, cli, broken, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # wide enough that no cell wraps
    folder = data_root(trained_run) / "val" / "cross"
    table = cli("predict", trained_run, folder, broken, tmp_path / "none*.png")
    assert table.exit_code == 0, table.output
    text = " ".join(table.output.split())
    assert "000.jpg" in text and "error:" in text and "pattern matches no file" in text
    assert any(f"{label} 0." in text for label in LABELS)

    usage = {
        "not a run directory, stage folder or export": [tmp_path],
        "not a model file": [broken],
        "no such file": [tmp_path / "missing"],
        "in a run directory only": [trained_run / "finetune", "--stage", "finetune"],
        "no finished unfreeze": [trained_run, "--stage", "unfreeze"],
        "an output file takes the csv or json format": [trained_run, "-o", tmp_path / "p.txt"],
        "'xml' is not one of 'table', 'csv', 'json'": [trained_run, "--format", "xml"],
    }
    for message, args in usage.items():
        result = cli("predict", *args[:1], folder, *args[1:])
        assert result.exit_code == 2, message
        assert message in words(result.output), result.output
    assert cli("predict", trained_run, folder, "--top-k", "0").exit_code == 2
    assert not (tmp_path / "p.txt").exists()


def test_exit_codes_when_images_cannot_be_read(trained_run, cli, broken, tmp_path):
    missing, output = tmp_path / "missing.jpg", tmp_path / "predictions.csv"
    nothing = cli("predict", trained_run, missing, broken, "-o", output)
    assert nothing.exit_code == 2, nothing.output
    assert f"no image could be classified ({missing}: file not found; {broken}: " in words(
        nothing.output
    )
    rows = list(csv.DictReader(output.open()))
    assert [row["path"] for row in rows] == [str(missing), str(broken)], "rows are written"
    assert rows[0]["error"] == "file not found"

    image = data_root(trained_run) / "val" / "disc" / "000.jpg"
    partial = cli("predict", trained_run, image, missing, "-q")
    assert partial.exit_code == 0, partial.output
    assert "1 of 2 image(s) could not be read" in words(partial.output)
    strict = cli("predict", trained_run, image, missing, "--strict", "-q")
    assert strict.exit_code == 1
    assert cli("predict", trained_run, image, "--strict", "-q").exit_code == 0


@pytest.mark.fast
def test_images_stream_in_batches_in_order(tmp_path):
    """No TensorFlow: a stand-in classifier records the batches it is given."""
    paths = []
    for index in range(7):
        path = tmp_path / "imgs" / f"{index}.png"
        path.parent.mkdir(exist_ok=True)
        Image.new("RGB", (8, 8), (index * 40,) * 3).save(path)
        paths.append(path)
    (tmp_path / "imgs" / "3.png").write_bytes(b"broken")
    seen: list[int] = []

    def predict(pixels: np.ndarray) -> np.ndarray:
        seen.append(len(pixels))
        brightness = pixels.mean(axis=(1, 2, 3)) / 255
        return np.stack([brightness, 1 - brightness], axis=1).astype(np.float32)

    classifier = Predictor(tmp_path, "keras", (4, 4), ["bright", "dark"], None, predict)
    sources = expand_images([str(tmp_path / "imgs"), str(tmp_path / "imgs" / "*.png")])
    assert [s.path for s in sources] == paths, "folder and glob give each file once, in order"
    progress: list[int] = []
    results = list(iter_predictions(classifier, sources, 1, 3, progress.append))
    assert seen == [3, 2, 1] and progress == [3, 3, 1]  # 3.png (in the 2nd batch) is unreadable
    assert [r.path for r in results] == [str(p) for p in paths]
    assert results[3].error and not results[3].top
    assert [r.top[0][0] for r in results if r.top] == ["dark"] * 3 + ["bright"] * 3


def test_predict_is_a_plain_function(trained_run, tmp_path):
    from tlcli.console import Console

    output = tmp_path / "p.json"
    summary = predict_images(
        trained_run,
        [str(data_root(trained_run) / "val")],
        output=output,
        console=Console(quiet=True),
    )
    assert summary.images == 12 and summary.errors == 0 and summary.output == output
    assert summary.model == trained_run / "finetune" / "model.keras"
    assert len(json.loads(output.read_text())) == 12
