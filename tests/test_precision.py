"""Mixed precision through the real stages: float32 outputs, finite losses, policy put back.

On CPU these check correctness only; mixed precision pays off on GPUs and TPUs.
"""

from __future__ import annotations

import csv
import json
import math

import keras
import numpy as np
import pytest
from conftest import config_dict

from tlcli import train as stages
from tlcli.config import HeadConfig, load_config
from tlcli.console import Console
from tlcli.model.network import FLOAT32_LAYERS, build_classifier, find_base
from tlcli.model.weights import build_base_with_weights
from tlcli.runtime.precision import dtype_policy, follow_policy, policy_name


def _losses(history_csv) -> list[float]:
    with history_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [float(row[key]) for row in rows for key in ("loss", "val_loss")]


def _policies(model: keras.Model) -> set[str]:
    return {layer.dtype_policy.name for layer in find_base(model).layers[1:]}


@pytest.mark.parametrize("setting", ["float16", "bfloat16"])
def test_mixed_precision_trains_with_a_float32_output_and_restores_the_policy(
    setting, image_folder, write_config
):
    config = config_dict(
        image_folder,
        finetune={"epochs": 1},
        unfreeze={"layers": 4, "epochs": 1, "cache": "on"},  # the cached bottom too
        run={"mixed_precision": setting},
    )
    cfg = load_config(write_config(config))
    before = keras.config.dtype_policy().name

    for stage in (stages.finetune, stages.unfreeze):
        stage(cfg, console=Console(quiet=True))
        assert keras.config.dtype_policy().name == before, "the stage left its policy behind"

    run = image_folder.parent / "runs" / "t"
    for stage in ("finetune", "unfreeze"):
        losses = _losses(run / stage / "history.csv")
        assert losses and all(math.isfinite(v) for v in losses), losses
        runtime = json.loads((run / stage / "stage.json").read_text())["runtime"]
        assert runtime["precision_policy"] == policy_name(setting)
        assert runtime["loss_scaling"] is (setting == "float16")  # Keras wraps mixed_float16 only

    model = keras.models.load_model(run / "unfreeze" / "model.keras", compile=False)
    assert _policies(model) == {policy_name(setting)}
    assert model.get_layer("predictions").dtype_policy.name == "float32"
    assert model.get_layer("preprocess").dtype_policy.name == "float32"
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    probabilities = model(images)
    assert keras.backend.standardize_dtype(probabilities.dtype) == "float32"
    np.testing.assert_allclose(keras.ops.convert_to_numpy(probabilities).sum(axis=1), 1.0, 1e-5)


def test_unfreeze_follows_its_own_policy_whatever_finetune_saved(image_folder, write_config):
    """model.keras records each layer's policy; the next stage re-applies the configured one,
    to the whole model, also when it trains its top on the cached outputs of its bottom."""
    config = config_dict(
        image_folder, finetune={"epochs": 1}, unfreeze={"layers": 2, "epochs": 1, "cache": "on"}
    )
    finetune_cfg = load_config(write_config(config))
    stages.finetune(finetune_cfg, console=Console(quiet=True))
    config["run"] = {"mixed_precision": "bfloat16"}
    unfreeze_cfg = load_config(write_config(config, "bf16.yaml"))
    stages.unfreeze(unfreeze_cfg, console=Console(quiet=True))

    run = image_folder.parent / "runs" / "t"
    saved = keras.models.load_model(run / "finetune" / "model.keras", compile=False)
    assert _policies(saved) == {"float32"}
    model = keras.models.load_model(run / "unfreeze" / "model.keras", compile=False)
    assert _policies(model) == {"mixed_bfloat16"}
    assert model.get_layer("predictions").dtype_policy.name == "float32"
    assert keras.config.dtype_policy().name == "float32"


@pytest.mark.fast
def test_follow_policy_keeps_preprocessing_and_softmax_in_float32():
    base = build_base_with_weights("resnet50", (32, 32), "none")
    model = build_classifier(base, 3, HeadConfig(dense=[8]), "avg", "resnet50", base_training=False)
    with dtype_policy("float16"):
        follow_policy(model, keep_float32=FLOAT32_LAYERS)
    assert keras.config.dtype_policy().name == "float32"
    assert model.dtype_policy.name == "mixed_float16"
    assert _policies(model) == {"mixed_float16"}
    policies = {layer.name: layer.dtype_policy.name for layer in model.layers}
    assert policies["head_dense_0"] == "mixed_float16"
    assert policies["preprocess"] == policies["predictions"] == "float32"
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    output = model(images)
    assert keras.backend.standardize_dtype(output.dtype) == "float32"
    assert np.isfinite(keras.ops.convert_to_numpy(output)).all()
