"""The stages end to end through the real CLI: real Keras graphs, real files, real run dirs."""

from __future__ import annotations

import json
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import assert_plot, config_dict, make_image_folder, run_subprocess, words
from odd_images import ODD_FILES, write_odd_files
from PIL import Image

from tlcli.config import load_config
from tlcli.model.network import find_base

METRIC_KEYS = {
    "accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "per_class",
    "confusion_matrix",
    "labels",
    "stage",
}


def test_run_leaves_the_documented_run_directory(image_folder, write_config, cli):
    config = config_dict(image_folder, unfreeze={"layers": 4, "epochs": 1})
    result = cli("run", write_config(config))
    assert result.exit_code == 0, result.output
    run = image_folder.parent / "runs" / "t"
    for name in ("config.yaml", "labels.txt", "data_report.json", "versions.json", "split.csv"):
        assert (run / name).is_file(), name
    assert (run / "labels.txt").read_text().split() == ["cross", "disc", "square"]
    versions = json.loads((run / "versions.json").read_text())
    assert {"python", "tensorflow", "keras", "tlcli"} <= set(versions)
    for stage in ("finetune", "unfreeze"):
        folder = run / stage
        for name in ("model.keras", "history.csv", "curves.png", "labels.txt", "metrics.json"):
            assert (folder / name).is_file(), f"{stage}/{name}"
        assert_plot(folder / "confusion_matrix.png")
        assert_plot(folder / "curves.png")
        assert any((folder / "logs").rglob("*tfevents*")), "TensorBoard logs"
        assert not (folder / "backup").exists(), "backups are removed once a stage finishes"
        metrics = json.loads((folder / "metrics.json").read_text())
        assert set(metrics) >= METRIC_KEYS
        assert metrics["stage"] == stage and metrics["split"] == "test"
        assert set(metrics["per_class"]) == {"cross", "disc", "square"}
        assert np.asarray(metrics["confusion_matrix"]).sum() == 12
        assert f"accuracy {metrics['accuracy']:.3f}" in result.output
    history = (run / "finetune" / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,") and len(history) == 3
    written = sorted(run.rglob("*.csv"))  # unfreeze's history.csv is Keras' CSVLogger's
    assert {"split.csv", "history.csv", "errors.csv"} <= {path.name for path in written}
    for path in written:  # one line end (LF) in every CSV file of a run
        assert b"\r" not in path.read_bytes(), path


def test_saved_model_takes_raw_pixels_and_matches_the_reported_accuracy(
    image_folder, write_config, cli
):
    result = cli("run", write_config(config_dict(image_folder)))
    assert result.exit_code == 0, result.output
    run = image_folder.parent / "runs" / "t"
    model = keras.models.load_model(run / "finetune" / "model.keras")
    labels = (run / "labels.txt").read_text().split()
    images, truth = [], []
    for index, label in enumerate(labels):
        for path in sorted((image_folder / "test" / label).iterdir()):
            # Decoded as Keras' own loaders do, independently of tlcli's decoder.
            pixels = np.asarray(Image.open(path).convert("RGB"))
            resized = tf.image.resize(pixels, (32, 32), method="bilinear").numpy()
            images.append(np.rint(resized))  # tlcli keeps decoded images as uint8
            truth.append(index)
    probabilities = model.predict(np.stack(images), verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    accuracy = float((probabilities.argmax(axis=1) == np.array(truth)).mean())
    metrics = json.loads((run / "finetune" / "metrics.json").read_text())
    assert accuracy == pytest.approx(metrics["accuracy"], abs=1e-3)


def test_existing_run_is_never_silently_overwritten(image_folder, write_config, cli, monkeypatch):
    path = write_config(config_dict(image_folder, finetune={"epochs": 1}))
    monkeypatch.chdir(image_folder.parent)  # paths print relative to it: runs/t
    first = cli("run", path)
    assert first.exit_code == 0, first.output
    assert "· 1 epoch\n" in first.output and "finetune: 1 epoch in " in first.output
    assert "t: summary (runs/t)" in first.output
    model = image_folder.parent / "runs" / "t" / "finetune" / "model.keras"
    stamp = model.stat().st_mtime_ns

    again = cli("run", path)
    assert again.exit_code == 2
    assert "--resume" in again.output and "--overwrite" in again.output
    stage_again = cli("finetune", path)
    assert stage_again.exit_code == 2 and "finetune finished" in stage_again.output
    assert model.stat().st_mtime_ns == stamp

    resumed = cli("run", path, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "already finished" in resumed.output
    assert model.stat().st_mtime_ns == stamp

    changed = cli("finetune", path, "--resume", "--set", "model.pooling=max")
    assert changed.exit_code == 2 and "model.pooling" in changed.output

    # --overwrite deletes the stage and the exports built on it; one elsewhere is named, kept.
    run = image_folder.parent / "runs" / "t"
    elsewhere = image_folder.parent / "served"
    assert cli("export", run, "--format", "keras", "-q").exit_code == 0
    assert cli("export", run, "--format", "keras", "-o", elsewhere, "-q").exit_code == 0
    overwritten = cli("run", path, "--overwrite")
    assert overwritten.exit_code == 0, overwritten.output
    assert model.stat().st_mtime_ns != stamp
    assert not (run / "export" / "finetune-keras").exists()
    assert "removed finetune, " in overwritten.output and "finetune-keras" in overwritten.output
    assert (elsewhere / "model.keras").is_file()
    assert "served holds an export of a removed stage" in words(overwritten.output)


@pytest.mark.fast
def test_unfreeze_needs_a_finished_finetune(image_folder, write_config, cli):
    path = write_config(config_dict(image_folder, unfreeze={"layers": 2}))
    result = cli("unfreeze", path)
    assert result.exit_code == 2
    assert "needs a finished finetune stage" in result.output
    assert "Traceback" not in result.output


def test_odd_images_are_reported_and_training_finishes(tmp_path, write_config, cli):
    root = make_image_folder(tmp_path / "data", {"train": 6, "val": 3})
    write_odd_files(root / "train" / "disc")
    config = config_dict(root, data={"test_dir": None}, finetune={"epochs": 1})
    result = cli("finetune", write_config(config))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "runs" / "t" / "data_report.json").read_text())
    skipped = {
        p.rsplit("/", 1)[-1]: r for p, r in ((s["path"], s["reason"]) for s in report["skipped"])
    }
    converted = {c["path"].rsplit("/", 1)[-1]: c["notes"] for c in report["converted"]}
    for name, outcome in ODD_FILES.items():
        assert name in (skipped if outcome == "skip" else converted), name
    good = 6 + sum(1 for o in ODD_FILES.values() if o == "convert")
    assert report["splits"]["train"]["counts"]["disc"] == good
    assert (tmp_path / "runs" / "t" / "finetune" / "model.keras").is_file()


def test_pretrained_base_is_reused_and_stays_frozen_in_finetune(tmp_path, write_config, cli):
    source = make_image_folder(
        tmp_path / "source", {"train": 6, "val": 2}, classes=("bar", "cross")
    )
    target = make_image_folder(tmp_path / "data", {"train": 6, "val": 2, "test": 2})
    config = config_dict(
        target,
        model={"base": "vgg16", "weights": "pretrain", "head": "pretrain"},
        pretrain={
            "data": {"train_dir": str(source / "train"), "val_dir": str(source / "val")},
            "epochs": 1,
            "head": {"dense": [8]},
        },
        # a learning rate too small to move anything: finetune must start from pretrain's weights
        finetune={"epochs": 1, "optimizer": {"name": "sgd", "learning_rate": 1e-12}},
    )
    result = cli("run", write_config(config))
    assert result.exit_code == 0, result.output
    assert "1 hidden head layer(s) copied from pretrain" in result.output
    run = tmp_path / "runs" / "t"
    pretrained = keras.models.load_model(run / "pretrain" / "model.keras")
    finetuned = keras.models.load_model(run / "finetune" / "model.keras")
    for before, after in zip(
        find_base(pretrained).get_weights(), find_base(finetuned).get_weights(), strict=True
    ):
        np.testing.assert_array_equal(before, after)
    np.testing.assert_allclose(
        pretrained.get_layer("head_dense_0").get_weights()[0],
        finetuned.get_layer("head_dense_0").get_weights()[0],
        atol=1e-6,
    )
    assert (run / "pretrain" / "labels.txt").read_text().split() == ["bar", "cross"]
    assert finetuned.output_shape == (None, 3)


@pytest.mark.slow  # ~60 s
def test_unfreeze_trains_the_top_and_keeps_batchnorm_statistics(image_folder, write_config, cli):
    """ResNet50: the top block trains; BatchNorm moving statistics do not move (inference mode)."""
    config = config_dict(
        image_folder,
        model={"base": "resnet50", "weights": "none", "head": {"dense": []}},
        finetune={"epochs": 1},
        unfreeze={
            "interpolate": "off",
            "from_block": "conv5",
            "epochs": 1,
            "optimizer": {"learning_rate": 1e-3},
        },
    )
    result = cli("run", write_config(config))
    assert result.exit_code == 0, result.output
    run = image_folder.parent / "runs" / "t"
    before = find_base(keras.models.load_model(run / "finetune" / "model.keras"))
    after = find_base(keras.models.load_model(run / "unfreeze" / "model.keras"))
    conv_top = "conv5_block3_3_conv"
    conv_low = "conv4_block6_3_conv"
    bn_top = "conv5_block3_3_bn"
    assert not np.array_equal(
        before.get_layer(conv_top).get_weights()[0], after.get_layer(conv_top).get_weights()[0]
    )
    np.testing.assert_array_equal(
        before.get_layer(conv_low).get_weights()[0], after.get_layer(conv_low).get_weights()[0]
    )
    for a, b in zip(
        before.get_layer(bn_top).get_weights(), after.get_layer(bn_top).get_weights(), strict=True
    ):
        np.testing.assert_array_equal(a, b)


def test_weights_from_a_local_file_and_a_file_that_does_not_fit(image_folder, write_config, cli):
    from tlcli.model.weights import build_base_with_weights

    saved = build_base_with_weights("vgg16", (32, 32), "none")
    weights_file = image_folder.parent / "vgg16_base.weights.h5"
    saved.save_weights(weights_file)
    config = config_dict(
        image_folder,
        data={"test_dir": None},
        model={"base": "vgg16", "weights": str(weights_file)},
        finetune={"epochs": 1},
    )
    assert cli("finetune", write_config(config)).exit_code == 0
    finetuned = keras.models.load_model(
        image_folder.parent / "runs" / "t" / "finetune" / "model.keras"
    )
    for a, b in zip(saved.get_weights(), find_base(finetuned).get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)

    config["name"] = "wrong"
    config["model"]["base"] = "resnet50"
    result = cli("finetune", write_config(config, "wrong.yaml"))
    assert result.exit_code == 2
    assert "model.weights" in result.output and "does not fit resnet50" in result.output


def test_imagenet_download_failure_says_what_to_do(image_folder, write_config, tmp_path):
    config = config_dict(image_folder, model={"base": "vgg16", "weights": "imagenet"})
    env = {
        "KERAS_HOME": str(tmp_path / "keras_home"),
        # a closed local port: the download fails fast even on a machine with network
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
    }
    done = run_subprocess("finetune", write_config(config), env=env)
    assert done.returncode == 1
    message = " ".join(done.stderr.split())
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert str(tmp_path / "keras_home" / "models") in message
    assert "model.weights" in message
    assert "Traceback" not in done.stderr


def test_stages_are_plain_python_functions(image_folder, write_config):
    from tlcli import train as stages
    from tlcli.console import Console

    cfg = load_config(write_config(config_dict(image_folder, finetune={"epochs": 1})))
    result = stages.finetune(cfg, console=Console(quiet=True))
    assert result.model_path.is_file() and result.epochs == 1
    metrics = stages.evaluate(cfg, console=Console(quiet=True))
    assert metrics["stage"] == "finetune"
    matrix = np.asarray(metrics["confusion_matrix"])  # the returned numbers are the saved ones
    assert matrix.sum() == 12 and metrics["accuracy"] == pytest.approx(
        np.trace(matrix) / 12, abs=1e-4
    )
    assert metrics == json.loads((cfg.run_dir / "finetune" / "metrics.json").read_text())
    shutil.rmtree(cfg.run_dir)
