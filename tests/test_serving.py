"""The serving snippets of docs/serving.md, run as written against real exports of the
session's trained run, each in a fresh Python process: the REST client against a stand-in for
TensorFlow Serving that calls the SavedModel's signature the way TF Serving's REST API does."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO
from PIL import Image

README_PATH = "runs/quickstart/export/unfreeze-{}"  # where the snippets look for exports


def snippet(name: str) -> str:
    """The code block under `<!-- snippet: NAME ... -->` in docs/serving.md."""
    page = (REPO / "docs" / "serving.md").read_text(encoding="utf-8")
    found = re.search(rf"<!-- snippet: {name} .*?-->\n```python\n(.*?)```", page, re.S)
    assert found, f"docs/serving.md has no snippet {name}"
    return found.group(1)


@pytest.fixture
def serving_folder(exports, trained_run, tmp_path) -> Path:
    """A folder laid out as the snippets expect: the run's exports, and photo.jpg."""
    assert all(result.exit_code == 0 for result in exports.values())
    target = tmp_path / "runs" / "quickstart" / "export"
    target.mkdir(parents=True)
    for name in ("savedmodel", "tflite", "onnx"):
        (target / f"unfreeze-{name}").symlink_to(trained_run / "export" / f"finetune-{name}")
    image = next((trained_run.parent.parent / "data" / "test" / "square").glob("*.png"))
    Image.open(image).convert("RGB").save(tmp_path / "photo.jpg", quality=95)
    return tmp_path


def expected_answer(folder: Path, trained_run: Path) -> tuple[str, float]:
    """The run's model on photo.jpg, decoded and resized as the snippets do."""
    model = keras.models.load_model(trained_run / "finetune" / "model.keras", compile=False)
    height, width = model.input_shape[1:3]
    image = Image.open(folder / "photo.jpg").convert("RGB").resize((width, height), Image.BILINEAR)
    probabilities = model.predict(np.asarray(image, np.float32)[None], verbose=0)[0]
    labels = (trained_run / "labels.txt").read_text().splitlines()
    return labels[probabilities.argmax()], float(probabilities.max())


def run_snippet(code: str, cwd: Path) -> tuple[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    label, probability = done.stdout.split()
    return label, float(probability)


@pytest.mark.parametrize(
    "name",
    # The TFLite snippet imports TensorFlow (~10 s): slow; test_export.py's fresh process already
    # runs the TFLite interpreter on every tflite export.
    [pytest.param(name, marks=pytest.mark.slow) for name in ("tflite", "onnx")],  # 80 s each
)
def test_readme_snippet_runs_as_written(name, serving_folder, trained_run):
    label, probability = run_snippet(snippet(name), serving_folder)
    expected_label, expected_probability = expected_answer(serving_folder, trained_run)
    assert label == expected_label
    assert probability == pytest.approx(expected_probability, abs=1e-4)


class FakeTFServing(BaseHTTPRequestHandler):
    """POST /v1/models/<name>:predict as TF Serving's REST API answers it, for the row format
    ("instances"): the signature named in the request (default `serving_default`), its one
    input filled with the stacked instances in the input's dtype, every output returned per
    instance, strings as text (https://www.tensorflow.org/tfx/serving/api_rest)."""

    saved_model = None  # set per test: the loaded SavedModel
    model_name = "classifier"

    def do_POST(self) -> None:
        if self.path != f"/v1/models/{self.model_name}:predict":
            self.send_error(404)
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        signature = self.saved_model.signatures[body.get("signature_name", "serving_default")]
        ((input_name, spec),) = signature.structured_input_signature[1].items()
        tensor = tf.constant(np.asarray(body["instances"], spec.dtype.as_numpy_dtype))
        outputs = {key: value.numpy() for key, value in signature(**{input_name: tensor}).items()}
        predictions = [
            {key: _jsonable(value[index]) for key, value in outputs.items()}
            for index in range(len(tensor))
        ]
        answer = json.dumps({"predictions": predictions}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args) -> None:  # no access log on stderr
        pass


def _jsonable(value):
    return value.decode() if isinstance(value, bytes) else value.tolist()


def test_readme_rest_request_is_answered_by_the_serving_signature(serving_folder, trained_run):
    saved_model = serving_folder / README_PATH.format("savedmodel") / "saved_model"
    FakeTFServing.saved_model = tf.saved_model.load(str(saved_model))
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeTFServing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        code = snippet("tf-serving-client")
        assert "http://localhost:8501/" in code
        code = code.replace("localhost:8501", f"127.0.0.1:{server.server_port}")
        label, probability = run_snippet(code, serving_folder)
    finally:
        server.shutdown()
        server.server_close()
    expected_label, expected_probability = expected_answer(serving_folder, trained_run)
    assert label == expected_label  # the `labels` output: the class name, not an index
    assert probability == pytest.approx(expected_probability, abs=1e-5)
