"""Options that change training, each checked for the effect its name promises."""

from __future__ import annotations

import csv
import json
import math
import shutil

import keras
import numpy as np
import pytest
import yaml
from conftest import config_dict, make_image_folder, words

from tlcli.bases import BASES
from tlcli.config import (
    AugmentConfig,
    FinetuneConfig,
    OptimizerConfig,
    ScheduleConfig,
)
from tlcli.data.pipeline import augmentation_layers, make_dataset
from tlcli.data.stage_data import DecodedSplit
from tlcli.model.network import find_base, preprocessing_layers
from tlcli.model.optimizers import compile_for_stage, make_optimizer, make_schedule


def _rates(schedule, steps):
    return [float(schedule(step)) for step in steps]


@pytest.mark.fast
def test_inverse_time_exponential_and_step_schedules_follow_their_formulas():
    lr0, per_epoch = 0.1, 10
    inverse = make_schedule(ScheduleConfig(name="inverse_time", decay_rate=0.5), lr0, per_epoch, 5)
    np.testing.assert_allclose(_rates(inverse, [0, 10, 30]), [lr0, lr0 / 1.5, lr0 / 2.5], rtol=1e-6)
    exponential = make_schedule(ScheduleConfig(name="exponential", decay_steps=4), lr0, 10, 5)
    np.testing.assert_allclose(_rates(exponential, [0, 2, 4]), [lr0, lr0 * 0.5**0.5, lr0 * 0.5])
    step = make_schedule(ScheduleConfig(name="step", decay_steps=4), lr0, 10, 5)
    np.testing.assert_allclose(_rates(step, [0, 3, 4, 8]), [lr0, lr0, lr0 / 2, lr0 / 4])
    assert make_schedule(ScheduleConfig(), lr0, 10, 5) == lr0


@pytest.mark.fast
def test_cosine_decays_over_the_whole_stage_after_its_warm_up():
    lr0, per_epoch, epochs = 0.01, 10, 5  # 50 steps
    plain = make_schedule(ScheduleConfig(name="cosine", alpha=0.1), lr0, per_epoch, epochs)
    np.testing.assert_allclose(
        _rates(plain, [0, 25, 50]), [lr0, lr0 * (0.1 + 0.9 * 0.5), lr0 * 0.1], rtol=1e-5
    )
    warm = make_schedule(ScheduleConfig(name="cosine", warmup_steps=10), lr0, per_epoch, epochs)
    rates = _rates(warm, [0, 5, 10, 30, 50])
    np.testing.assert_allclose(rates[:3], [0.0, lr0 / 2, lr0], rtol=1e-5, atol=1e-9)
    # after the warm-up, cosine over the remaining 40 steps: half-way at step 30, 0 at step 50
    np.testing.assert_allclose(rates[3:], [lr0 * 0.5, 0.0], rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize(
    ("settings", "kind", "attributes"),
    [
        ({"name": "sgd", "momentum": 0.9, "nesterov": True}, "SGD", {"momentum": 0.9}),
        ({"name": "adamw", "weight_decay": 0.01}, "AdamW", {"weight_decay": 0.01}),
        ({"name": "rmsprop", "momentum": 0.5}, "RMSprop", {"momentum": 0.5}),
        ({"name": "adam", "clipnorm": 1.0}, "Adam", {"clipnorm": 1.0}),
    ],
)
@pytest.mark.fast
def test_optimizers_beyond_adam_get_their_settings(settings, kind, attributes):
    optimizer = make_optimizer(OptimizerConfig(**settings), ScheduleConfig(), 10, 2)
    assert type(optimizer).__name__ == kind
    for name, value in attributes.items():
        assert getattr(optimizer, name) == pytest.approx(value)
    if settings.get("nesterov"):
        assert optimizer.nesterov is True


@pytest.mark.fast
def test_label_smoothing_is_in_the_loss():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Softmax()])
    confident = np.array([[20.0, -20.0]])  # softmax: [1, 0], a perfect prediction
    target = np.array([[1.0, 0.0]])
    losses = {}
    for smoothing in (0.0, 0.2):
        compile_for_stage(model, FinetuneConfig(label_smoothing=smoothing), 1)
        losses[smoothing] = model.evaluate(confident, target, verbose=0)[0]
    assert losses[0.0] < 1e-6
    # smoothed target [0.9, 0.1]: the loss of a perfect prediction is 0.1 x 40 nats (clipped)
    assert losses[0.2] > 1.0


def test_balanced_class_weights_reach_the_training_loss(tmp_path, write_config, cli):
    """The same imbalanced data and seed, with and without `class_weight: balanced`."""
    root = make_image_folder(tmp_path / "data", {"train": 3, "val": 2}, classes=("bar", "disc"))
    make_image_folder(tmp_path / "extra", {"train": 9}, classes=("disc",), seed=5)
    for path in (tmp_path / "extra" / "train" / "disc").iterdir():
        path.rename(root / "train" / "disc" / f"x{path.name}")
    losses = {}
    for weighting in ("none", "balanced"):
        config = config_dict(
            root,
            name=weighting,
            data={"test_dir": None, "class_weight": weighting},
            finetune={"epochs": 1, "cache": "off"},
        )
        assert cli("finetune", write_config(config, f"{weighting}.yaml"), "-q").exit_code == 0
        history = tmp_path / "runs" / weighting / "finetune" / "history.csv"
        losses[weighting] = float(next(csv.DictReader(history.open()))["loss"])
    assert losses["none"] != pytest.approx(losses["balanced"], rel=1e-4)
    weights = np.array([12 / (2 * 3), 12 / (2 * 9)], np.float32)  # n / (classes x count)
    split = DecodedSplit("t", "t", np.zeros((12, 4, 4, 3), np.uint8), np.arange(12),
                         np.array([0] * 3 + [1] * 9), [])  # fmt: skip
    _, onehot, example_weights = next(iter(make_dataset(split, 2, 12, class_weights=weights)))
    np.testing.assert_allclose(example_weights, onehot.numpy() @ weights)


def test_early_stopping_stops_and_says_so(image_folder, write_config, cli):
    config = config_dict(
        image_folder,
        # an improvement of 10 in val_loss never happens: stop after the first epoch's patience
        finetune={
            "epochs": 6,
            "early_stopping": {"monitor": "val_loss", "patience": 1, "min_delta": 10},
        },
    )
    assert cli("finetune", write_config(config), "-q").exit_code == 0
    stage = image_folder.parent / "runs" / "t" / "finetune"
    rows = list(csv.DictReader((stage / "history.csv").open()))
    assert len(rows) == 2
    state = json.loads((stage / "stage.json").read_text())
    assert state["stopped_early"] is True and state["epochs"] == 2


def test_unfreeze_from_layer_trains_that_layer_and_above_only(image_folder, write_config, cli):
    config = config_dict(
        image_folder,
        finetune={"epochs": 1},
        unfreeze={
            "interpolate": "off",
            "from_layer": "block5_conv3",
            "epochs": 1,
            "optimizer": {"learning_rate": 1e-2},
        },
    )
    result = cli("run", write_config(config), "-q")
    assert result.exit_code == 0, result.output
    run = image_folder.parent / "runs" / "t"
    before = find_base(keras.models.load_model(run / "finetune" / "model.keras"))
    after = find_base(keras.models.load_model(run / "unfreeze" / "model.keras"))
    weights = {name: (before.get_layer(name), after.get_layer(name)) for name in
               ("block5_conv2", "block5_conv3")}  # fmt: skip
    np.testing.assert_array_equal(*(layer.get_weights()[0] for layer in weights["block5_conv2"]))
    assert not np.array_equal(*(layer.get_weights()[0] for layer in weights["block5_conv3"]))


@pytest.mark.slow  # ~40 s on 2 cores; the default (BN frozen) is checked in test_stages.py
def test_unfreeze_train_bn_moves_batchnorm_statistics(image_folder, write_config, cli):
    """The counterpart of tests/test_stages.py's check that BN stays put by default."""
    config = config_dict(
        image_folder,
        model={"base": "mobilenet_v2", "weights": "none", "head": {"dense": []}},
        finetune={"epochs": 1},
        unfreeze={"interpolate": "off", "from_block": "block_16", "epochs": 1, "train_bn": True},
    )
    assert cli("run", write_config(config), "-q").exit_code == 0
    run = image_folder.parent / "runs" / "t"
    before = find_base(keras.models.load_model(run / "finetune" / "model.keras"))
    after = find_base(keras.models.load_model(run / "unfreeze" / "model.keras"))

    def moving_means(name: str) -> list[np.ndarray]:
        return [model.get_layer(name).moving_mean.numpy() for model in (before, after)]

    assert not np.allclose(*moving_means("block_16_project_BN")), "BN in training mode moves"
    # below the unfrozen block: frozen, in inference mode, statistics unchanged
    np.testing.assert_array_equal(*moving_means("block_15_project_BN"))


@pytest.mark.parametrize("base", ["densenet121", "efficientnet_b0", "vgg16", "mobilenet_v2"])
@pytest.mark.fast
def test_preprocessing_layers_equal_the_applications_own(base):
    """tlcli rebuilds each base's preprocess_input from plain layers: same numbers."""
    modules = {
        "densenet121": keras.applications.densenet,
        "efficientnet_b0": keras.applications.efficientnet,
        "vgg16": keras.applications.vgg16,
        "mobilenet_v2": keras.applications.mobilenet_v2,
    }
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    x = pixels
    for layer in preprocessing_layers(BASES[base]):
        x = layer(x)
    expected = modules[base].preprocess_input(pixels.copy())
    np.testing.assert_allclose(np.asarray(x), expected, rtol=1e-5, atol=1e-4)


@pytest.mark.fast
def test_rotation_crop_and_contrast_augment_every_epoch_reproducibly():
    augment = AugmentConfig(rotation=0.1, crop=0.2, contrast=0.3)
    kinds = [type(layer).__name__ for layer in augmentation_layers(augment, (16, 16), 0)]
    assert kinds == ["RandomRotation", "RandomCrop", "Resizing", "RandomContrast"]
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    split = DecodedSplit("train", "t", pixels, np.arange(8), np.arange(8) % 2, [])

    def first_epochs(seed: int) -> list[np.ndarray]:  # one batch per epoch
        dataset = make_dataset(split, 2, 8, seed=seed, augment=augment, epochs=(0, 2))
        return [images.numpy() for images, _ in dataset]

    plain = next(iter(make_dataset(split, 2, 8)))[0].numpy()
    epoch1, epoch2 = first_epochs(seed=3)
    assert epoch1.shape == plain.shape == (8, 16, 16, 3)
    assert not np.allclose(epoch1, plain), "the images are augmented"
    assert not np.allclose(epoch1, epoch2), "each epoch draws new augmentations"
    again = first_epochs(seed=3)
    np.testing.assert_array_equal(epoch1, again[0])
    assert math.isfinite(float(epoch1.mean()))


def test_evaluating_another_split_keeps_the_default_splits_files(trained_run, cli, tmp_path):
    run = tmp_path / "runs" / "t"
    shutil.copytree(trained_run, run)
    config = yaml.safe_load((trained_run.parent.parent / "config.yaml").read_text())
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**config, "output_dir": str(tmp_path / "runs")}))
    stage = run / "finetune"
    default = {
        name: (stage / name).read_bytes() for name in ("metrics.json", "confusion_matrix.png")
    }

    result = cli("evaluate", path, "--set", "evaluate.split=train", "-q")
    assert result.exit_code == 0, result.output
    assert json.loads((stage / "metrics-train.json").read_text())["split"] == "train"
    assert (stage / "confusion_matrix-train.png").is_file()
    for name, content in default.items():
        assert (stage / name).read_bytes() == content, f"{name} is the test split's, untouched"


def test_evaluate_stage_option_from_the_command_line(image_folder, write_config, cli):
    config = config_dict(image_folder, finetune={"epochs": 1}, unfreeze={"layers": 2, "epochs": 1})
    path = write_config(config)
    assert cli("run", path, "-q").exit_code == 0
    run = image_folder.parent / "runs" / "t"
    (run / "finetune" / "metrics.json").unlink()
    result = cli("evaluate", path, "--stage", "finetune", "-q")
    assert result.exit_code == 0, result.output
    assert "finetune on test" in result.output and "unfreeze on" not in result.output
    assert json.loads((run / "finetune" / "metrics.json").read_text())["stage"] == "finetune"
    default = cli("evaluate", path, "-q")
    assert "unfreeze on test" in default.output, "default: the latest trained stage"
    wrong = cli("evaluate", path, "--stage", "pretrain")
    assert wrong.exit_code == 2 and "'pretrain' is not one of 'finetune', 'unfreeze'" in words(
        wrong.output
    )
