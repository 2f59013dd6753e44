"""Knowing the data and the model's mistakes: the reports every evaluation writes, calibration
through predict and every export, and `tlcli doctor` on planted faults."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import config_dict, words
from PIL import Image

from tlcli.data.images import decode_image
from tlcli.serve.predictor import load_predictor
from tlcli.train.calibration import log_of, tempered

CLASSES = ["cross", "disc", "square"]


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.references: list[str] = []
        self.tags = 0

    def handle_starttag(self, tag, attrs):
        self.tags += 1
        self.references += [v for k, v in attrs if k in ("href", "src") and v]


def _copy_run(trained_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "runs" / "copy"
    shutil.copytree(trained_run, copy, ignore=shutil.ignore_patterns("export"))  # other tests'
    return copy


def _config_for(run: Path, tmp_path: Path) -> Path:
    """The run's own resolved config, pointed at the run folder it now lives in."""
    config = yaml.safe_load((run / "config.yaml").read_text())
    config.update(output_dir=str(run.parent), name=run.name)
    path = tmp_path / "copy.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_run_writes_errors_gallery_card_and_a_self_contained_report(trained_run):
    finetune = trained_run / "finetune"
    metrics = json.loads((finetune / "metrics.json").read_text())
    matrix = np.array(metrics["confusion_matrix"])
    with (finetune / "errors.csv").open() as handle:
        errors = list(csv.DictReader(handle))
    assert len(errors) == matrix.sum() - np.trace(matrix)
    confidences = [float(row["confidence"]) for row in errors]
    assert confidences == sorted(confidences, reverse=True)  # worst first
    assert all(row["true_label"] != row["predicted_label"] for row in errors)
    assert Image.open(finetune / "errors.png").size[0] > 100
    assert Image.open(finetune / "reliability.png").size[0] > 100
    assert 0 <= metrics["calibration"]["ece"] <= 1 and metrics["calibration"]["bins"] == 15

    card = (finetune / "MODEL_CARD.md").read_text()
    for heading in ("## Data", "## Recipe", "## Metrics", "## Weak classes", "## Reproduce"):
        assert heading in card
    for name in CLASSES:
        assert f"| {name} |" in card

    page = (trained_run / "report.html").read_text()
    parser = _Links()
    parser.feed(page)
    assert parser.tags > 20 and "finetune" in page and "<table>" in page
    assert "http" not in " ".join(parser.references)  # nothing from a network
    for reference in parser.references:
        assert reference.startswith("data:image/png;base64,") or (trained_run / reference).is_file()
    assert sum(r.startswith("data:image/png") for r in parser.references) >= 4


def test_report_of_a_stage_not_evaluated_says_how(trained_run, tmp_path, cli):
    run = _copy_run(trained_run, tmp_path)
    for name in ("metrics.json", "predictions.npz"):
        (run / "finetune" / name).unlink()
    result = cli("report", run)
    assert result.exit_code == 0, result.output
    page = " ".join((run / "report.html").read_text().split())
    assert "not evaluated yet" in page and "tlcli evaluate" in page and "--stage finetune" in page
    assert cli("report", tmp_path / "nothing").exit_code == 2


def _calibrate(trained_run: Path, tmp_path: Path, cli) -> tuple[Path, Path, np.ndarray, dict]:
    """A copy of the run, calibrated; its test images and the probabilities before."""
    run = _copy_run(trained_run, tmp_path)
    config = _config_for(run, tmp_path)
    images = sorted((trained_run.parent.parent / "data" / "test").rglob("*.*"))[:8]
    pixels = np.stack([decode_image(p, (32, 32)).pixels for p in images])
    before = load_predictor(run).predict(pixels)
    result = cli("evaluate", config, "--calibrate", "--quiet")
    assert result.exit_code == 0, result.output
    fitted = json.loads((run / "finetune" / "calibration.json").read_text())
    return run, config, pixels, {"before": before, "fitted": fitted}


@pytest.mark.slow  # ~35 s
def test_calibrated_probabilities_agree_in_predict_and_export_and_undo(trained_run, tmp_path, cli):
    run, config, pixels, found = _calibrate(trained_run, tmp_path, cli)
    temperature, before = found["fitted"]["temperature"], found["before"]
    state = json.loads((run / "finetune" / "stage.json").read_text())
    assert state["calibration"]["temperature"] == temperature
    assert found["fitted"]["after"]["nll"] <= found["fitted"]["before"]["nll"] + 1e-6
    calibrated = load_predictor(run).predict(pixels)
    np.testing.assert_allclose(calibrated, tempered(log_of(before), temperature), atol=1e-4)
    assert (calibrated.argmax(1) == before.argmax(1)).all()
    card = (run / "finetune" / "MODEL_CARD.md").read_text()
    assert f"T = {temperature:.3f}" in card

    result = cli("export", run, "--format", "keras", "--quiet")
    assert result.exit_code == 0, result.output
    exported = load_predictor(run / "export" / "finetune-keras").predict(pixels)
    np.testing.assert_allclose(exported, calibrated, atol=1e-5)
    export = json.loads((run / "export" / "finetune-keras" / "export.json").read_text())
    assert export["calibration"]["temperature"] == temperature
    result = cli("export", run, "--format", "onnx", "--quiet")
    assert result.exit_code == 0, result.output
    onnx = load_predictor(run / "export" / "finetune-onnx").predict(pixels)
    np.testing.assert_allclose(onnx, calibrated, atol=1e-4)

    assert cli("evaluate", config, "--uncalibrate", "--quiet").exit_code == 0
    np.testing.assert_allclose(load_predictor(run).predict(pixels), before, atol=1e-6)
    assert not (run / "finetune" / "calibration.json").exists()
    assert "calibration" not in json.loads((run / "finetune" / "stage.json").read_text())


def test_unfreeze_after_calibrating_mixes_from_the_head_as_trained(trained_run, tmp_path, cli):
    """The weight mix starts where unfreeze started: finetune's head as trained, not as it was
    scaled by calibration since."""
    import keras

    from tlcli.model.output_layer import output_layer
    from tlcli.rundir import UNCALIBRATED_FILE

    run, config, _, found = _calibrate(trained_run, tmp_path, cli)
    assert abs(found["fitted"]["temperature"] - 1) > 1e-3  # else the two heads are one
    with np.load(run / "finetune" / UNCALIBRATED_FILE) as saved:
        as_trained = saved["kernel"]
    settings = yaml.safe_load(config.read_text())
    # A rate that moves nothing: every mix predicts alike, so the tie keeps the start (mix 0).
    settings["unfreeze"] = {"epochs": 1, "layers": 2, "optimizer": {"learning_rate": 1e-12}}
    config.write_text(yaml.safe_dump(settings, sort_keys=False))
    result = cli("unfreeze", config, "--quiet")
    assert result.exit_code == 0, result.output
    assert json.loads((run / "unfreeze" / "stage.json").read_text())["weight_mix"]["chosen"] == 0
    model = keras.models.load_model(run / "unfreeze" / "model.keras", compile=False)
    np.testing.assert_allclose(output_layer(model).get_weights()[0], as_trained, atol=1e-6)


def _mirror_sensitive_model(size: int = 32):
    """A flip-TTA classifier of 3 classes whose image and mirror branches disagree: its logits
    are a bias plus the left half's brightness minus the right half's, times a class weight.
    Averaged as trained it favours class 0 or 2; its mean logits, class 1: a temperature that
    softens each branch before the mean moves the top class towards 1."""
    import keras

    from tlcli.model.network import assemble
    from tlcli.model.tta import with_mirror_tta

    chain = [
        keras.layers.Flatten(name="head_pool"),
        keras.layers.Dense(3, activation="softmax", name="predictions", dtype="float32"),
    ]
    model = with_mirror_tta(assemble(chain, (size, size), base_training=False))
    side = np.where(np.arange(size) < size // 2, 1.0, -1.0) / (size * size / 2 * 3 * 255)
    per_input = np.broadcast_to(side[None, :, None], (size, size, 3)).reshape(-1)
    kernel = per_input[:, None] * np.array([40.0, 0.0, -36.0])
    chain[-1].set_weights([kernel.astype(np.float32), np.array([0, 0.5, 0], np.float32)])
    return model


def test_calibrating_a_model_with_mirror_tta_keeps_every_top_class(trained_run, tmp_path, cli):
    """The temperature follows the mean of the image's and the mirror's predictions: dividing
    each branch's logits instead changes the top class of some images."""
    from tlcli.model.output_layer import scale_logits

    run = _copy_run(trained_run, tmp_path)
    config = _config_for(run, tmp_path)
    _mirror_sensitive_model().save(run / "finetune" / "model.keras")
    images = sorted((trained_run.parent.parent / "data").rglob("*.*"))
    pixels = np.stack([decode_image(p, (32, 32)).pixels for p in images])
    before = load_predictor(run).predict(pixels)
    result = cli("evaluate", config, "--calibrate", "--quiet")
    assert result.exit_code == 0, result.output
    temperature = json.loads((run / "finetune" / "calibration.json").read_text())["temperature"]

    per_branch = _mirror_sensitive_model()
    scale_logits(per_branch, 1 / temperature)
    softened = per_branch.predict(pixels.astype(np.float32), verbose=0)
    assert (softened.argmax(1) != before.argmax(1)).sum() >= 10, "the model must be one it breaks"
    after = load_predictor(run).predict(pixels)
    assert (after.argmax(1) == before.argmax(1)).all()
    np.testing.assert_allclose(after, tempered(log_of(before), temperature), atol=1e-5)
    for export_format in ("tflite", "onnx"):  # exports are built from the calibrated model
        result = cli("export", run, "--format", export_format, "--quiet")
        assert result.exit_code == 0, result.output
        exported = load_predictor(run / "export" / f"finetune-{export_format}").predict(pixels)
        np.testing.assert_allclose(exported, after, atol=1e-4)
    assert cli("evaluate", config, "--uncalibrate", "--quiet").exit_code == 0
    np.testing.assert_allclose(load_predictor(run).predict(pixels), before, atol=1e-6)


@pytest.mark.slow
def test_calibration_holds_in_savedmodel_and_tflite_and_refitting_starts_afresh(
    trained_run, tmp_path, cli
):
    run, config, pixels, found = _calibrate(trained_run, tmp_path, cli)
    calibrated = load_predictor(run).predict(pixels)
    for export_format in ("savedmodel", "tflite"):
        result = cli("export", run, "--format", export_format, "--quiet")
        assert result.exit_code == 0, result.output
        exported = load_predictor(run / "export" / f"finetune-{export_format}").predict(pixels)
        np.testing.assert_allclose(exported, calibrated, atol=1e-4)
    # Calibrating again starts from the trained output layer: the same T, the same model.
    assert cli("evaluate", config, "--calibrate", "--quiet").exit_code == 0
    again = json.loads((run / "finetune" / "calibration.json").read_text())
    assert again["temperature"] == pytest.approx(found["fitted"]["temperature"], rel=1e-3)
    np.testing.assert_allclose(load_predictor(run).predict(pixels), calibrated, atol=1e-5)


# ------------------------------------------------------------------------------------ doctor


def _colour_folder(root: Path, counts: dict[str, int], seed: int = 0) -> Path:
    """Three classes told apart by colour, with textured backgrounds, at 96 px."""
    rng = np.random.default_rng(seed)
    tints = {"red": (200, 40, 40), "green": (40, 190, 60), "blue": (50, 60, 210)}
    for split, n in counts.items():
        for name, tint in tints.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                base = rng.integers(0, 255, (12, 12, 3)).astype(np.uint8)
                texture = np.asarray(Image.fromarray(base).resize((96, 96), Image.BICUBIC))
                pixels = np.clip(0.45 * texture + 0.55 * np.array(tint), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{name}-{split}-{i:02d}.png")
    return root


def _near_copy(source: Path, target: Path) -> None:
    with Image.open(source) as image:
        width, height = image.size
        cropped = image.convert("RGB").crop((4, 3, 4 + int(width * 0.9), 3 + int(height * 0.9)))
    small = cropped.resize((cropped.width // 2, cropped.height // 2))
    shifted = np.clip(np.asarray(small, np.float32) * 1.05 + 6, 0, 255).astype(np.uint8)
    Image.fromarray(shifted).save(target, quality=40)


def test_doctor_finds_planted_duplicates_and_flipped_labels(tmp_path, write_config, cli):
    data = _colour_folder(tmp_path / "data", {"train": 14, "val": 4, "test": 4})
    _near_copy(data / "train/red/red-train-03.png", data / "test/red/copy-of-red-03.jpg")
    _near_copy(data / "train/blue/blue-train-05.png", data / "train/blue/copy-of-blue-05.jpg")
    flips = {"green-train-02.png": "green", "blue-train-07.png": "blue"}
    shutil.move(data / "train/green/green-train-02.png", data / "train/red/green-train-02.png")
    shutil.move(data / "train/blue/blue-train-07.png", data / "train/green/blue-train-07.png")
    (data / "train/red/broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    config = write_config(config_dict(data, data={"image_size": [64, 64]}))

    result = cli("doctor", config, "--strict")
    assert result.exit_code == 1, result.output  # a near-duplicate crosses splits
    folder = tmp_path / "runs" / "t" / "doctor"
    with (folder / "doctor.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    pairs = {
        frozenset((Path(r["file"]).name, Path(r["other"]).name))
        for r in rows
        if r["issue"] == "near-duplicate"
    }
    assert frozenset(("red-train-03.png", "copy-of-red-03.jpg")) in pairs
    assert frozenset(("blue-train-05.png", "copy-of-blue-05.jpg")) in pairs
    labels = {Path(r["file"]).name: r["other"] for r in rows if r["issue"] == "label"}
    for name, true_class in flips.items():
        assert labels.get(name) == true_class, rows
    assert any(r["issue"] == "unreadable" and r["file"].endswith("broken.jpg") for r in rows)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["counts"]["cross-split duplicate"] >= 1
    assert (folder / "duplicates.png").is_file() and (folder / "label_issues.png").is_file()
    page = (tmp_path / "runs" / "t" / "report.html").read_text()
    assert "Data doctor" in page and "doctor/doctor.csv" in page
    assert "across splits" in words(result.output) or "across splits" in page


def test_doctor_reports_one_image_under_two_labels_as_a_label_conflict(tmp_path, write_config, cli):
    data = _colour_folder(tmp_path / "data", {"train": 8, "val": 3})
    shutil.copyfile(data / "train/red/red-train-01.png", data / "train/blue/red-again.png")
    shutil.copyfile(data / "train/green/green-train-02.png", data / "val/green/green-again.png")
    config = write_config(config_dict(data, data={"test_dir": None, "image_size": [64, 64]}))

    result = cli("doctor", config)
    assert result.exit_code == 0, result.output
    folder = tmp_path / "runs" / "t" / "doctor"
    with (folder / "doctor.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    pairs = {
        issue: [{Path(r["file"]).name, Path(r["other"]).name} for r in rows if r["issue"] == issue]
        for issue in ("label conflict", "near-duplicate")
    }
    assert pairs["label conflict"] == [{"red-train-01.png", "red-again.png"}], rows
    assert pairs["near-duplicate"] == [{"green-train-02.png", "green-again.png"}], rows
    (conflict,) = [r for r in rows if r["issue"] == "label conflict"]
    assert {conflict["label"], conflict["note"].split("labelled ")[1].split(",")[0]} == {
        "red", "blue"
    }  # fmt: skip
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["counts"]["label conflict"] == 1 and summary["counts"]["near-duplicate"] == 1
    assert summary["sheets"]["label conflicts"] == "conflicts.png"
    assert (folder / "conflicts.png").is_file()
    page = (tmp_path / "runs" / "t" / "report.html").read_text()
    assert "label conflict" in page and 'alt="label conflicts"' in page
    assert "same image, two labels" in words(result.output)


@pytest.mark.fast
def test_outliers_include_blank_frames_however_close_to_each_other():
    """Pooled features of blank frames are weak, and alike: each is the others' nearest image,
    so the distance to the nearest images alone missed all three."""
    from tlcli.insight.outliers import find_outliers

    rng = np.random.default_rng(4)
    common = rng.uniform(0.5, 1.5, 64)  # non-negative, like pooled ReLU activations
    photos = common + rng.gamma(0.3, 1.0, (400, 64)) * rng.lognormal(0, 0.35, (400, 1))
    blanks = common * 0.15 + rng.uniform(0, 0.01, (3, 64))
    wrong_domain = rng.gamma(0.3, 1.0, (1, 64)) * 6
    found = find_outliers(np.concatenate([photos, blanks, wrong_domain]))
    assert sorted(found.rows.tolist()) == [400, 401, 402, 403]
    assert sorted(found.reasons) == ["empty", "empty", "empty", "far"]
    assert find_outliers(photos).rows.tolist() == []


def test_doctor_on_one_class_says_what_it_cannot_check(tmp_path, write_config, cli):
    data = _colour_folder(tmp_path / "data", {"train": 3})
    shutil.rmtree(data / "train" / "green")
    shutil.rmtree(data / "train" / "blue")
    config = write_config(
        config_dict(data, data={"val_dir": None, "test_dir": None, "image_size": [64, 64]})
    )
    result = cli("doctor", config)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "runs" / "t" / "doctor" / "summary.json").read_text())
    assert any("label errors need two classes" in note for note in summary["notes"])
    assert "label errors need two classes" in words(result.output)


@pytest.mark.fast
def test_label_issues_with_one_image_in_a_class_say_so_and_check_the_rest():
    from tlcli.insight.label_issues import find_label_issues

    rng = np.random.default_rng(0)
    labels = np.array([0] * 200 + [1] * 200 + [2])  # features like a base's: many, each weak
    features = rng.normal(0, 1, (3, 256))[labels] + rng.normal(0, 1, (401, 256))
    labels[[3, 205]] = [1, 0]  # two flips among the classes that can be checked
    found = find_label_issues(features, labels, ["a", "b", "c"], seed=0)
    assert found.notes == [
        "class c has 1 image(s): its labels cannot be checked (it needs at least 2)"
    ]
    assert 400 not in found.rows, "the lone image is not judged"
    assert {3, 205} <= set(found.rows.tolist())


@pytest.mark.fast
def test_doctor_without_its_extra_names_it(tmp_path, write_config, cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "cleanlab", None)  # import cleanlab now fails
    data = _colour_folder(tmp_path / "data", {"train": 2})
    config = write_config(config_dict(data, data={"val_dir": None, "test_dir": None}))
    result = cli("doctor", config)
    assert result.exit_code == 2
    assert "pip install 'tlcli[doctor]'" in words(result.output)
