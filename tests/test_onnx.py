"""ONNX export beyond the tiny VGG16 run of test_export.py: any network of built-in Keras layers
converts, a missing extra is one line naming it, and real bases end to end (slow)."""

from __future__ import annotations

import json
import sys

import keras
import numpy as np
import pytest
from conftest import SHARED, config_dict, make_image_folder, words

from tlcli.model.tta import with_mirror_tta
from tlcli.serve.onnx_model import write_onnx
from tlcli.serve.parity import compare, tolerance
from tlcli.serve.predictor import load_predictor

WEIGHTS = SHARED / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
HYMENOPTERA = SHARED / "datasets" / "hymenoptera"


def _classifier(size: int, classes: int, temperature: float) -> keras.Model:
    """A small conv net whose logits are divided by a temperature before the softmax, as a
    calibrated output layer is."""
    image = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(image)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.DepthwiseConv2D(3)(x))
    logits = keras.layers.Dense(classes)(x)
    scaled = keras.layers.Rescaling(1 / temperature)(logits)
    return keras.Model(image, keras.layers.Activation("softmax")(scaled))


def test_a_network_with_test_time_augmentation_and_a_temperature_converts(tmp_path):
    size, labels = 16, ["ant", "bee", "wasp"]
    keras.utils.set_random_seed(0)  # weights whose answers differ between an image and its mirror
    classifier = _classifier(size, len(labels), temperature=1.7)
    model = with_mirror_tta(classifier)  # tlcli's own test-time augmentation
    pixels = np.random.default_rng(0).integers(0, 256, (6, size, size, 3)).astype(np.float32)
    expected = model.predict(pixels, verbose=0)
    plain = classifier.predict(pixels, verbose=0)
    mirrored = classifier.predict(pixels[:, :, ::-1], verbose=0)
    np.testing.assert_allclose(expected, (plain + mirrored) / 2, atol=1e-6)  # the mirror is exact
    assert np.abs(expected - plain).max() > 1e-4, "the mirror branch changes the answer"

    path = tmp_path / "tta.onnx"
    write_onnx(model, (size, size), path, {"labels": json.dumps(labels)})
    predictor = load_predictor(path)
    assert (predictor.kind, predictor.image_size, predictor.labels) == ("onnx", (16, 16), labels)
    assert predictor.labels_file == path  # the labels came from the file's own metadata
    check = compare(expected, predictor.predict(pixels.astype(np.uint8)), tolerance("onnx", "none"))
    assert check.passed, check.describe()


def test_onnx_without_its_extra_is_one_line_naming_it(trained_run, cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # `import tf2onnx` now fails
    result = cli("export", trained_run, "--format", "onnx", "-o", tmp_path / "exported")
    assert result.exit_code == 2
    assert "the onnx format needs tf2onnx, which is not installed: pip install 'tlcli[onnx]'" in (
        words(result.output)
    )
    assert "Traceback" not in result.output and not (tmp_path / "exported").exists()

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    model = tmp_path / "model.onnx"
    model.write_bytes(b"")
    image = next((trained_run.parent.parent / "data" / "test").rglob("*.png"))
    result = cli("predict", model, image)
    assert result.exit_code == 2
    assert "reading model.onnx needs onnxruntime, which is not installed" in words(result.output)


def test_a_file_that_is_not_onnx_is_a_clear_error(cli, tmp_path, trained_run):
    model = tmp_path / "model.onnx"
    model.write_text("not a model")
    image = next((trained_run.parent.parent / "data" / "test").rglob("*.png"))
    result = cli("predict", model, image)
    assert result.exit_code == 1
    assert "model.onnx: ONNX Runtime cannot load it" in words(result.output)
    assert "Traceback" not in result.output


# ------------------------------------------------------------------------- real bases (slow)


def _export_and_compare(cli, run, images) -> dict[str, dict]:
    """Export `run` as onnx (and onnx-dynamic, when it passes its check); `images` get the same
    top-1 class from the run and from the ONNX file."""
    checks = {}
    for quantize in ("none", "dynamic"):
        result = cli("export", run, "--format", "onnx", "--quantize", quantize)
        suffix = "" if quantize == "none" else "-dynamic"
        folder = run / "export" / f"finetune-onnx{suffix}"
        if quantize == "dynamic" and result.exit_code == 1:
            # A quantized file that fails its check is refused, with the reason, and not kept.
            assert "does not match the Keras model" in words(result.output), result.output
            assert "depthwise convolutions" in words(result.output)
            assert not folder.exists() and sorted(p.name for p in folder.parent.iterdir()) == [
                "finetune-onnx"
            ]
            continue
        assert result.exit_code == 0, result.output
        checks[quantize] = json.loads((folder / "export.json").read_text())["parity"]["checks"][
            "onnx"
        ]
        checks[quantize]["bytes"] = (folder / "model.onnx").stat().st_size
    assert checks["none"]["max_diff"] <= 1e-4 and checks["none"]["agreement"] == 1.0
    if "dynamic" in checks:
        assert checks["dynamic"]["passed"]
        assert checks["dynamic"]["bytes"] < checks["none"]["bytes"] / 3

    top1 = {}
    for name, target in [("run", run), ("onnx", run / "export" / "finetune-onnx" / "model.onnx")]:
        result = cli("predict", target, *images, "--format", "json", "--top-k", "1")
        assert result.exit_code == 0, result.output
        top1[name] = [item["predictions"][0]["label"] for item in json.loads(result.stdout)]
    assert top1["onnx"] == top1["run"]
    return checks


@pytest.mark.slow
def test_resnet50_run_exports_to_onnx(tmp_path, write_config, cli):
    data = make_image_folder(tmp_path / "data", {"train": 10, "val": 6, "test": 4})
    config = config_dict(data, model={"base": "resnet50"}, finetune={"epochs": 2})
    assert cli("run", write_config(config), "-q").exit_code == 0
    images = sorted((data / "test").rglob("*.*"))
    checks = _export_and_compare(cli, tmp_path / "runs" / "t", images)
    assert "dynamic" in checks, "plain convolutions survive dynamic quantization"


@pytest.mark.slow
@pytest.mark.skipif(not WEIGHTS.is_file(), reason="../shared/weights not present")
@pytest.mark.skipif(not (HYMENOPTERA / "val").is_dir(), reason="../shared/datasets not present")
def test_mobilenet_v2_with_imagenet_weights_exports_to_onnx(tmp_path, write_config, cli):
    """Real weights on real photos: the float file agrees to 1e-4; the dynamic one is judged
    by its top-1 agreement (README's export section has the measured figures)."""
    config = {
        "name": "t",
        "output_dir": str(tmp_path / "runs"),
        "data": {"train_dir": str(HYMENOPTERA / "train"), "image_size": [160, 160]},
        "model": {"base": "mobilenet_v2", "weights": str(WEIGHTS)},
        "finetune": {"epochs": 3},
    }
    assert cli("run", write_config(config), "-q").exit_code == 0
    images = sorted((HYMENOPTERA / "val" / "bees").iterdir())[:20]
    _export_and_compare(cli, tmp_path / "runs" / "t", images)
