"""`tlcli export`: every format from a real trained run, checked in-process by the export itself
and again in a fresh Python process that cannot import tlcli."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import keras
import numpy as np
import onnx
import pytest
from conftest import EXPORTS, config_dict, make_image_folder, words

from tlcli.cache.decoded_images import decode_folder
from tlcli.data.folders import scan_folder
from tlcli.data.images import decode_image
from tlcli.model.output_layer import output_layer
from tlcli.serve.formats import FORMAT_QUANTIZE_MODES
from tlcli.serve.parity import (
    TOLERANCES,
    Tolerance,
    calibration_images,
    compare,
    non_integer_layers,
    tolerance,
)

FRESH_FILES = ("pixels.npy", "exports.json", "results.npz")
ARTEFACTS = {
    "keras": "model.keras",
    "savedmodel": "saved_model",
    "tflite": "model.tflite",
    "onnx": "model.onnx",
}

# Runs in `python -I -S`: no PYTHON* variables, no user site, no .pth files (so not the
# editable install's finder), the venv's site-packages added by hand. Only TF, Keras, NumPy,
# and ONNX Runtime for the ONNX files.
FRESH_PROCESS = r"""
import json, sys
from pathlib import Path

site_packages, pixels_file, exports_file, results_file = sys.argv[1:]
sys.path.append(site_packages)
try:
    import tlcli
except ImportError:
    pass
else:
    raise SystemExit(f"tlcli is importable here ({tlcli.__file__}): not a clean process")

import numpy as np
import tensorflow as tf
import keras

pixels = np.load(pixels_file)  # uint8 [N, H, W, 3], decoded by the parent
results = {}
for name, folder in json.loads(Path(exports_file).read_text()).items():
    folder = Path(folder)
    labels = (folder / "labels.txt").read_text().splitlines()
    if (folder / "model.keras").is_file():
        model = keras.models.load_model(folder / "model.keras")
        probabilities = model.predict(pixels.astype("float32"), verbose=0)
    elif (folder / "saved_model").is_dir():
        loaded = tf.saved_model.load(str(folder / "saved_model"))
        served = loaded.signatures["serving_default"](image=tf.constant(pixels))
        floats = loaded.signatures["serve_float"](image=tf.constant(pixels, tf.float32))
        probabilities = served["probabilities"].numpy()
        np.testing.assert_allclose(floats["probabilities"].numpy(), probabilities, atol=1e-6)
        top = [labels[i] for i in probabilities.argmax(axis=1)]
        assert [label.decode() for label in served["labels"].numpy()] == top, name
    elif (folder / "model.onnx").is_file():
        import onnxruntime as ort

        session = ort.InferenceSession(str(folder / "model.onnx"))
        assert [i.name for i in session.get_inputs()] == ["image"], name
        assert [o.name for o in session.get_outputs()] == ["probabilities"], name
        metadata = session.get_modelmeta().custom_metadata_map
        assert json.loads(metadata["labels"]) == labels, name
        (probabilities,) = session.run(None, {"image": pixels.astype(np.float32)})
    else:
        interpreter = tf.lite.Interpreter(model_path=str(folder / "model.tflite"))
        image = interpreter.get_input_details()[0]
        assert image["dtype"] == np.float32, image
        interpreter.resize_tensor_input(image["index"], list(pixels.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(image["index"], pixels.astype(np.float32))
        interpreter.invoke()
        probabilities = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    assert len(labels) == probabilities.shape[1], name
    results[name] = probabilities
np.savez(results_file, **results)
assert not [m for m in sys.modules if m.split(".")[0] == "tlcli"]
print("ok")
"""


@pytest.mark.parametrize("name", EXPORTS)
@pytest.mark.slow  # the `exports` fixture converts to every format: ~100 s
def test_each_export_passes_its_own_check(exports, trained_run, name):
    result = exports[name]
    assert result.exit_code == 0, result.output
    export_format, quantize = EXPORTS[name]
    folder = trained_run / "export" / f"finetune-{name}"
    artefact = folder / ARTEFACTS[export_format]
    text = words(result.output)
    assert f"-> {artefact} (" in text and " MB); check passed" in text
    assert (folder / "labels.txt").read_text() == (trained_run / "labels.txt").read_text()
    metadata = json.loads((folder / "export.json").read_text())
    assert metadata["format"] == export_format and metadata["quantize"] == quantize
    assert metadata["image_size"] == [32, 32] and metadata["labels"] == ["cross", "disc", "square"]
    assert metadata["parity"]["passed"] and not metadata["parity"]["forced"]
    checks = metadata["parity"]["checks"].values()
    assert checks and all(check["passed"] and check["images"] == 54 for check in checks)
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")], "temp folders"


@pytest.mark.slow  # the `exports` fixture converts to every format: ~100 s
def test_onnx_dynamic_export_is_smaller_and_computes_in_integers(exports, trained_run, cli):
    assert exports["onnx-dynamic"].exit_code == 0
    dynamic = trained_run / "export" / "finetune-onnx-dynamic" / "model.onnx"
    float32 = trained_run / "export" / "finetune-onnx" / "model.onnx"
    assert dynamic.stat().st_size < float32.stat().st_size / 3
    operators = {node.op_type for node in onnx.load(str(dynamic)).graph.node}
    assert {"ConvInteger", "DynamicQuantizeLinear"} <= operators, operators
    assert "ConvInteger" not in {node.op_type for node in onnx.load(str(float32)).graph.node}

    # Exporting again to the same folder is refused before anything is converted.
    before = dynamic.stat().st_mtime_ns
    again = cli("export", trained_run, "--format", "onnx", "--quantize", "dynamic")
    assert again.exit_code == 2 and "already exists; use --overwrite" in words(again.output)
    assert dynamic.stat().st_mtime_ns == before


@pytest.mark.slow  # the `exports` fixture converts to every format: ~100 s
def test_int8_export_holds_integer_weights_and_is_smaller(exports, trained_run):
    assert exports["tflite-int8"].exit_code == 0
    int8 = trained_run / "export" / "finetune-tflite-int8" / "model.tflite"
    layers, not_integer = non_integer_layers(int8)
    # VGG16 (1 preprocessing + 13 conv, 2 dense) once per branch of the test-time augmentation
    # (image, mirror), and the mirror itself
    assert layers == 33 and not_integer == []
    assert "all 33 conv/dense layers hold int8" in exports["tflite-int8"].output
    float32 = trained_run / "export" / "finetune-tflite" / "model.tflite"
    assert int8.stat().st_size < float32.stat().st_size / 3
    assert non_integer_layers(float32)[1], "the float export is reported as float"


@pytest.mark.slow  # the `exports` fixture converts to every format: ~100 s
def test_exports_match_the_run_in_a_fresh_process_without_tlcli(exports, trained_run, tmp_path):
    assert all(result.exit_code == 0 for result in exports.values())
    images = sorted((trained_run.parent.parent / "data" / "val").rglob("*.*"))
    pixels = np.stack([decode_image(path, (32, 32)).pixels for path in images])
    pixels_file, exports_file, results_file = FRESH_FILES
    np.save(tmp_path / pixels_file, pixels)
    folders = {name: str(trained_run / "export" / f"finetune-{name}") for name in EXPORTS}
    (tmp_path / exports_file).write_text(json.dumps(folders))
    (tmp_path / "fresh.py").write_text(FRESH_PROCESS)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    site_packages = sysconfig.get_paths()["purelib"]
    done = subprocess.run(
        [sys.executable, "-I", "-S", "fresh.py", site_packages, *FRESH_FILES],
        cwd=tmp_path,
        env={**environment, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-4000:]

    model = keras.models.load_model(trained_run / "finetune" / "model.keras", compile=False)
    reference = model.predict(pixels.astype(np.float32), verbose=0)
    results = np.load(tmp_path / results_file)
    assert sorted(results.files) == sorted(EXPORTS)
    for name, (export_format, quantize) in EXPORTS.items():
        check = compare(reference, results[name], tolerance(export_format, quantize))
        assert check.passed, f"{name}: {check.describe()}"


@pytest.mark.slow  # the `exports` fixture converts to every format: ~100 s
def test_exports_carry_the_runs_test_time_augmentation(exports, trained_run):
    """The run's model averages each image with its mirror (model.tta: flip), so it answers
    the same for both; so does every export, and it agrees with the run on both."""
    from tlcli.serve.predictor import load_predictor

    images = sorted((trained_run.parent.parent / "data" / "test").rglob("*.*"))
    pixels = np.stack([decode_image(path, (32, 32)).pixels for path in images])
    mirrors = np.ascontiguousarray(pixels[:, :, ::-1])
    model = keras.models.load_model(trained_run / "finetune" / "model.keras", compile=False)
    reference = model.predict(pixels.astype(np.float32), verbose=0)
    np.testing.assert_allclose(
        model.predict(mirrors.astype(np.float32), verbose=0), reference, atol=1e-5
    )
    plain = keras.Model(model.input, model.get_layer("tta_mean").input[0])
    assert np.abs(plain.predict(pixels.astype(np.float32), verbose=0) - reference).max() > 1e-4
    for name in ("keras", "savedmodel", "tflite", "onnx"):
        predictor = load_predictor(trained_run / "export" / f"finetune-{name}")
        for batch in (pixels, mirrors):
            check = compare(reference, predictor.predict(batch), tolerance(name, "none"))
            assert check.passed, f"{name}: {check.describe()}"


@pytest.mark.slow  # the `exports` fixture converts to every format: ~100 s
def test_predict_reads_exports_as_files_or_folders(exports, trained_run, cli):
    images = sorted((trained_run.parent.parent / "data" / "test" / "disc").iterdir())
    exported = trained_run / "export"
    targets = {
        "run": trained_run,
        "savedmodel": exported / "finetune-savedmodel",
        "tflite-int8": exported / "finetune-tflite-int8",
        "onnx": exported / "finetune-onnx" / "model.onnx",  # a bare .onnx file
        "onnx-dynamic": exported / "finetune-onnx-dynamic",  # an ONNX export folder
    }
    table = {}
    for name, target in targets.items():
        result = cli("predict", target, *images, "--format", "json")
        assert result.exit_code == 0, result.output
        rows = [
            {p["label"]: p["probability"] for p in item["predictions"]}
            for item in json.loads(result.stdout)
        ]
        table[name] = np.array(
            [[row[label] for label in ("cross", "disc", "square")] for row in rows]
        )
    np.testing.assert_allclose(table["savedmodel"], table["run"], atol=1e-5)
    np.testing.assert_allclose(table["onnx"], table["run"], atol=1e-4)
    assert (table["onnx"].argmax(axis=1) == table["run"].argmax(axis=1)).all()
    assert compare(table["run"], table["tflite-int8"], tolerance("tflite", "int8")).passed
    assert compare(table["run"], table["onnx-dynamic"], tolerance("onnx", "dynamic")).passed


def test_existing_exports_are_kept_and_a_failed_check_leaves_nothing(
    trained_run, cli, tmp_path, monkeypatch
):
    folder = tmp_path / "exported"
    assert cli("export", trained_run, "--format", "keras", "-o", folder).exit_code == 0
    again = cli("export", trained_run, "--format", "keras", "-o", folder)
    assert again.exit_code == 2 and "--overwrite" in again.output
    replaced = cli("export", trained_run, "--format", "keras", "-o", folder, "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    kept = (folder / "export.json").read_text()

    # A check that cannot pass: the export must fail with exit 1 and leave nothing behind.
    monkeypatch.setitem(TOLERANCES, ("keras", "none"), Tolerance(max_diff=-1.0, min_agreement=1.0))
    failed = cli("export", trained_run, "--format", "keras", "-o", tmp_path / "new")
    assert failed.exit_code == 1
    assert "does not match the Keras model" in words(failed.output)
    assert "nothing was written; use --force to keep it anyway" in words(failed.output)
    failed_overwrite = cli("export", trained_run, "--format", "keras", "-o", folder, "--overwrite")
    assert failed_overwrite.exit_code == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"], "no temp or half export"
    assert (folder / "export.json").read_text() == kept, "the previous export is untouched"
    assert (folder / "model.keras").is_file()


def test_force_keeps_an_export_that_fails_its_check_and_says_so(
    trained_run, cli, tmp_path, monkeypatch
):
    monkeypatch.setitem(TOLERANCES, ("keras", "none"), Tolerance(max_diff=-1.0, min_agreement=1.0))
    folder = tmp_path / "forced"
    result = cli("export", trained_run, "--format", "keras", "-o", folder, "--force")
    assert result.exit_code == 0, result.output
    said = words(result.output)  # one warning, wrapped to the terminal's width
    assert said.count("warning:") == 1 and said.count("failed its check, as forced") == 1, said
    assert (folder / "model.keras").is_file() and (folder / "labels.txt").is_file()
    parity = json.loads((folder / "export.json").read_text())["parity"]
    assert parity["passed"] is False and parity["forced"] is True
    assert parity["checks"]["keras"]["passed"] is False

    # --force on an export that passes records nothing forced.
    monkeypatch.undo()
    passing = cli("export", trained_run, "--format", "keras", "-o", tmp_path / "ok", "--force")
    assert passing.exit_code == 0 and "check passed" in words(passing.output)
    parity = json.loads((tmp_path / "ok" / "export.json").read_text())["parity"]
    assert parity["passed"] is True and parity["forced"] is False


@pytest.mark.fast
def test_each_format_and_quantize_mode_has_its_tolerance():
    """Float exports are held to max |dp|; quantized ones to top-1 agreement, so a float16 file
    whose probabilities move by a few hundredths but whose answers all agree passes, and one
    that changes a third of its answers fails, whatever its |dp|."""
    keras_probs = np.tile([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.3, 0.5]], (10, 1))
    nudged = keras_probs + np.array([-0.03, 0.02, 0.01])  # same top-1 class everywhere
    swapped = keras_probs.copy()
    swapped[::3] = [0.3, 0.4, 0.3]  # a third of the answers change, |dp| 0.4
    pairs = {(fmt, mode) for fmt, modes in FORMAT_QUANTIZE_MODES.items() for mode in modes}
    assert set(TOLERANCES) == pairs
    for export_format, quantize in pairs:
        limits = tolerance(export_format, quantize)
        if quantize == "none":
            assert limits.max_diff <= 1e-4 and limits.min_agreement == 1.0
            assert not compare(keras_probs, nudged, limits).passed
        else:
            assert compare(keras_probs, nudged, limits).passed, (export_format, quantize)
            assert not compare(keras_probs, swapped, limits).passed, (export_format, quantize)


def test_int8_calibration_images_are_the_pixels_the_run_trained_on(trained_run):
    """The representative dataset goes through the run's own decoder and resize: the same
    uint8 pixels as the run's image cache holds for its training rows."""
    with (trained_run / "split.csv").open(newline="") as split:
        train = [Path(row["path"]) for row in csv.DictReader(split) if row["split"] == "train"]
    calibration = calibration_images(trained_run, (32, 32))
    folder = scan_folder(trained_run.parent.parent / "data" / "train")
    decoded = decode_folder(folder, (32, 32), trained_run / "cache")
    rows = [folder.files.index(path) for path in train]
    assert calibration.dtype == np.uint8 and len(calibration) == len(train) == 30
    np.testing.assert_array_equal(calibration, decoded.pixels[rows])


@pytest.fixture(scope="module")
def searched_run(tmp_path_factory):
    """VGG16 at 32 px, random weights, no hidden layer: its head is fitted by the search. Some
    of its pooled features fire on a handful of the training images only."""
    data = make_image_folder(
        tmp_path_factory.mktemp("searched") / "data", {"train": 12, "val": 4, "test": 4}
    )
    config = config_dict(data, model={"head": {"dense": []}}, finetune=None)
    path = data.parent / "config.yaml"
    path.write_text(json.dumps(config))
    from typer.testing import CliRunner

    from tlcli.cli import app

    result = CliRunner().invoke(app, ["run", str(path), "-q"])
    assert result.exit_code == 0, result.output
    run = data.parent / "runs" / "t"
    assert json.loads((run / "finetune" / "search.json").read_text())["kept"] == "search"
    return run


def test_a_searched_head_holds_no_outsized_weights(searched_run):
    """No row of the folded kernel dwarfs the others: int8 and float16 give each class one
    scale, which an outsized row would set for every weight of that class."""
    model = keras.models.load_model(searched_run / "finetune" / "model.keras", compile=False)
    rows = np.abs(output_layer(model).get_weights()[0]).max(axis=1)
    assert rows.max() <= 50 * np.median(rows), (rows.max(), np.median(rows))


@pytest.mark.parametrize("quantize", ["dynamic", "int8"])
def test_a_searched_head_exports_to_quantized_tflite_that_agrees(searched_run, cli, quantize):
    folder = searched_run / "export" / f"finetune-tflite-{quantize}"
    result = cli("export", searched_run, "--format", "tflite", "--quantize", quantize)
    assert result.exit_code == 0, result.output
    check = json.loads((folder / "export.json").read_text())["parity"]["checks"]["tflite"]
    assert check["agreement"] >= 0.97, check


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "pb"], "'pb' is not one of 'keras', 'savedmodel', 'tflite', 'onnx'"),
        (["--format", "keras", "--quantize", "int8"], "applies to the tflite format only"),
        (["--format", "onnx", "--quantize", "int8"], "tflite format only; onnx takes none or"),
        (["--format", "onnx", "--quantize", "float16"], "tflite format only; onnx takes none"),
        (["--format", "savedmodel", "--quantize", "dynamic"], "the tflite and onnx formats only"),
        (["--format", "tflite", "--quantize", "int4"], "'int4' is not one of"),
        (["--format", "keras", "--stage", "unfreeze"], "no finished unfreeze stage"),
    ],
)
def test_export_usage_errors(trained_run, cli, args, message, tmp_path):
    result = cli("export", trained_run, *args, "--output", tmp_path / "exported")
    assert result.exit_code == 2
    assert message in words(result.output)
    assert not list(tmp_path.iterdir()), "nothing written"


def test_a_stage_folder_exports_that_stage(trained_run, cli, tmp_path):
    result = cli("export", trained_run / "finetune", "--format", "keras", "-o", tmp_path / "x")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "x" / "export.json").read_text())["stage"] == "finetune"
    wrong = cli("export", trained_run / "finetune", "--format", "keras", "--stage", "unfreeze")
    assert wrong.exit_code == 2 and "is the finetune stage, not unfreeze" in words(wrong.output)


@pytest.mark.fast
def test_export_needs_a_run_directory(cli, tmp_path):
    result = cli("export", tmp_path, "--format", "keras")
    assert result.exit_code == 2 and "not a run directory" in result.output
