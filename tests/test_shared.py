"""Real ImageNet weights and real photographs, from ../shared/ when it is there (else skipped)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import SHAPES, SHARED, config_dict, make_image_folder, run_subprocess

from tlcli.model.network import find_base

WEIGHTS = SHARED / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
HYMENOPTERA = SHARED / "datasets" / "hymenoptera"

needs_weights = pytest.mark.skipif(not WEIGHTS.is_file(), reason="../shared/weights not present")
needs_photos = pytest.mark.skipif(
    not (HYMENOPTERA / "train").is_dir(), reason="../shared/datasets/hymenoptera not present"
)


@needs_weights
@pytest.mark.slow
def test_imagenet_weights_come_from_a_local_keras_home_without_network(
    image_folder, write_config, tmp_path
):
    keras_home = tmp_path / "keras_home"
    (keras_home / "models").mkdir(parents=True)
    shutil.copy(WEIGHTS, keras_home / "models" / WEIGHTS.name)
    config = config_dict(
        image_folder,
        data={"image_size": [224, 224], "test_dir": None},
        model={"base": "mobilenet_v2", "weights": "imagenet"},
        finetune={"epochs": 1},
    )
    env = {
        "KERAS_HOME": str(keras_home),
        # any download attempt would fail fast: the proxy is a closed local port
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
    }
    done = run_subprocess("finetune", write_config(config), "-q", env=env)
    assert done.returncode == 0, done.stderr
    model = keras.models.load_model(image_folder.parent / "runs" / "t" / "finetune" / "model.keras")
    reference = keras.applications.MobileNetV2(
        include_top=False, weights=str(WEIGHTS), input_shape=(224, 224, 3)
    )
    for loaded, expected in zip(
        find_base(model).get_weights(), reference.get_weights(), strict=True
    ):
        np.testing.assert_array_equal(loaded, expected)


@needs_weights
@needs_photos
@pytest.mark.slow
def test_real_weights_beat_random_weights_on_real_photos(tmp_path, write_config, cli):
    """Ants vs bees: a short frozen finetune on ImageNet features against random features."""
    accuracies = {}
    for weights in (str(WEIGHTS), "none"):
        name = "imagenet" if weights != "none" else "random"
        config = {
            "name": name,
            "output_dir": str(tmp_path / "runs"),
            "data": {
                "train_dir": str(HYMENOPTERA / "train"),
                "test_dir": str(HYMENOPTERA / "val"),
                "image_size": [160, 160],
            },
            "model": {"base": "mobilenet_v2", "weights": weights},
            "finetune": {"epochs": 5},
        }
        result = cli("run", write_config(config, f"{name}.yaml"), "-q")
        assert result.exit_code == 0, result.output
        metrics = tmp_path / "runs" / name / "finetune" / "metrics.json"
        accuracies[name] = json.loads(metrics.read_text())["accuracy"]
    assert accuracies["imagenet"] >= 0.8, accuracies
    assert accuracies["imagenet"] - accuracies["random"] >= 0.2, accuracies
    report = json.loads((tmp_path / "runs" / "imagenet" / "data_report.json").read_text())
    odd = {entry["path"].rsplit("/", 1)[-1] for entry in report["converted"] + report["skipped"]}
    assert "imageNotFound.gif" in odd  # the placeholder GIF among the photos is reported


@needs_weights
@needs_photos
@pytest.mark.slow
def test_doctor_flags_no_ordinary_photo_of_hymenoptera_as_an_outlier(tmp_path, write_config, cli):
    """Clean real photographs: the placeholder GIF is the one outlier (the distance rule's
    median absolute deviation, blind to the long upper tail of real photos, flagged 3 more)."""
    pytest.importorskip("cleanlab")
    config = {
        "name": "doctor",
        "output_dir": str(tmp_path / "runs"),
        "data": {
            "train_dir": str(HYMENOPTERA / "train"),
            "test_dir": str(HYMENOPTERA / "val"),
            "image_size": [160, 160],
        },
        "model": {"base": "mobilenet_v2", "weights": str(WEIGHTS)},
    }
    result = cli("doctor", write_config(config), "-q")
    assert result.exit_code == 0, result.output
    doctor_csv = tmp_path / "runs" / "doctor" / "doctor" / "doctor.csv"
    with doctor_csv.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["issue"] == "outlier"]
    assert [row["file"].rsplit("/", 1)[-1] for row in rows] == ["imageNotFound.gif"], rows


def _int8_config(dataset: str, tmp_path) -> dict:
    if dataset == "hymenoptera":
        data = {"train_dir": str(HYMENOPTERA / "train"), "test_dir": str(HYMENOPTERA / "val")}
        size = 128
    else:  # uniform images: some of the base's channels fire on a handful of them only
        root = make_image_folder(
            tmp_path / "shapes", {"train": 40, "val": 10, "test": 25}, classes=SHAPES, size=64
        )
        data = {k: str(root / s) for k, s in (("train_dir", "train"), ("val_dir", "val"),
                                               ("test_dir", "test"))}  # fmt: skip
        size = 64
    return {
        "name": "t",
        "output_dir": str(tmp_path / "runs"),
        "data": {**data, "image_size": [size, size]},
        "model": {"base": "mobilenet_v2", "weights": str(WEIGHTS)},
    }


@pytest.mark.slow
@needs_weights
@needs_photos
@pytest.mark.parametrize("dataset", ["hymenoptera", "shapes"])
def test_int8_export_of_a_searched_head_agrees_on_the_test_split(
    dataset, tmp_path, write_config, cli
):
    """MobileNetV2 with ImageNet weights, tlcli's default recipe (the head fitted by the search,
    mirrored images, flip TTA in the model), exported as full-integer TFLite: on the whole test
    split it answers as the Keras model does for at least 97% and loses at most 1.5 points."""
    from tlcli.data.images import decode_image
    from tlcli.serve.predictor import load_predictor

    config = _int8_config(dataset, tmp_path)
    assert cli("run", write_config(config), "-q").exit_code == 0
    run = tmp_path / "runs" / "t"
    exported = cli("export", run, "--format", "tflite", "--quantize", "int8")
    assert exported.exit_code == 0, exported.output
    classes = (run / "labels.txt").read_text().splitlines()
    with (run / "split.csv").open(newline="") as split:
        test = [row for row in csv.DictReader(split) if row["split"] == "test"]
    size = tuple(config["data"]["image_size"])
    pixels = np.stack([decode_image(Path(row["path"]), size).pixels for row in test])
    labels = np.array([classes.index(row["label"]) for row in test])
    keras_top = load_predictor(run).predict(pixels).argmax(1)
    int8 = load_predictor(run / "export" / "finetune-tflite-int8")
    batches = [int8.predict(pixels[i : i + 32]) for i in range(0, len(pixels), 32)]
    int8_top = np.concatenate(batches).argmax(1)
    assert len(test) == {"hymenoptera": 153, "shapes": 100}[dataset]
    assert (int8_top == keras_top).mean() >= 0.97
    assert (int8_top == labels).mean() >= (keras_top == labels).mean() - 0.015
