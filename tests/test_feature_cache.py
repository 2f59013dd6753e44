"""The frozen-bottom cache: the same model as uncached training, rebuilt whenever it is stale."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from conftest import config_dict

from tlcli.cache.cut import cut_at_head
from tlcli.cache.decoded_images import load_stage_data
from tlcli.cache.features import cached_features
from tlcli.config import DataConfig, HeadConfig
from tlcli.model.freezing import freeze_base
from tlcli.model.network import build_classifier
from tlcli.model.weights import build_base_with_weights


def _test_images(image_folder, size=32):
    data = DataConfig(train_dir=image_folder / "test", val_split=0.0)
    split = load_stage_data(
        data, (size, size), 0, image_folder.parent / "tmpcache", image_folder.parent
    ).splits["train"]
    return np.asarray(split.array[split.rows], dtype=np.float32)


def _train(cli, write_config, config, name):
    config = {**config, "name": name}
    result = cli("run", write_config(config, f"{name}.yaml"))
    assert result.exit_code == 0, result.output
    return config


@pytest.mark.parametrize(
    "base",
    [pytest.param(base, marks=pytest.mark.slow) for base in ("vgg16", "resnet50")],  # 45-80 s
)
def test_cached_training_gives_the_uncached_model(image_folder, write_config, cli, base):
    config = config_dict(
        image_folder,
        model={"base": base, "weights": "none", "head": {"dense": [16], "dropout": 0.2}},
        finetune={"epochs": 2},
        unfreeze={"from_block": "block5" if base == "vgg16" else "conv5", "epochs": 1},
    )
    cached = _train(
        cli,
        write_config,
        {
            **config,
            "finetune": {**config["finetune"], "cache": "on"},
            "unfreeze": {**config["unfreeze"], "cache": "on"},
        },
        "cached",
    )
    plain = _train(
        cli,
        write_config,
        {
            **config,
            "finetune": {**config["finetune"], "cache": "off"},
            "unfreeze": {**config["unfreeze"], "cache": "off"},
        },
        "plain",
    )
    runs = image_folder.parent / "runs"
    images = _test_images(image_folder)
    for stage in ("finetune", "unfreeze"):
        state = json.loads((runs / cached["name"] / stage / "stage.json").read_text())
        assert state["cache"]["used"] is True
        assert (
            json.loads((runs / plain["name"] / stage / "stage.json").read_text())["cache"]["used"]
            is False
        )
        a = keras.models.load_model(runs / cached["name"] / stage / "model.keras").predict(
            images, verbose=0
        )
        b = keras.models.load_model(runs / plain["name"] / stage / "model.keras").predict(
            images, verbose=0
        )
        np.testing.assert_allclose(a, b, atol=2e-4)
    history_cached = (runs / "cached" / "finetune" / "history.csv").read_text().splitlines()
    assert len(history_cached) == 3
    # One pass of the frozen prefix served both stages: unfreeze found it cached.
    finetune_cache = json.loads((runs / "cached" / "finetune" / "stage.json").read_text())["cache"]
    unfreeze_cache = json.loads((runs / "cached" / "unfreeze" / "stage.json").read_text())["cache"]
    assert finetune_cache["unfreeze_prefix"] and unfreeze_cache["reused"], unfreeze_cache
    _check_evaluate_uses_exact_cache(cli, write_config, cached, runs / cached["name"])


def test_evaluate_with_mirror_tta_runs_the_top_on_the_cached_image_and_mirror_outputs(
    image_folder, write_config, cli
):
    """A cached stage saved with flip TTA caches the mirror images' outputs of the split
    evaluate scores; evaluate averages the top's predictions on both, as the saved model does."""
    config = config_dict(
        image_folder,
        model={"base": "vgg16", "weights": "none", "head": {"dense": []}, "tta": "flip"},
        finetune={"epochs": 3, "cache": "on", "search": "off"},
        unfreeze={"from_block": "block5", "epochs": 1, "cache": "on", "interpolate": "off"},
    )
    config = _train(cli, write_config, config, "tta")
    run = image_folder.parent / "runs" / "tta"
    for stage in ("finetune", "unfreeze"):
        assert json.loads((run / stage / "stage.json").read_text())["tta"] == "flip"
        assert list((run / "cache").glob(f"features-{stage}-mirror-test-*.npy")), stage
    _check_evaluate_uses_exact_cache(cli, write_config, config, run)


def _check_evaluate_uses_exact_cache(cli, write_config, config, run):
    """`run` evaluated each stage on the features its stage cached, with the top it saved;
    without that top, evaluate finds them from the whole model's bottom (not with flip TTA: the
    mirror outputs are the stage's alone); without them, it runs the whole model: the same
    predictions each time."""
    tta = json.loads((run / "finetune" / "stage.json").read_text())["tta"] is not None
    from_cache = {}
    for stage in ("finetune", "unfreeze"):
        metrics = json.loads((run / stage / "metrics.json").read_text())
        assert metrics["cached_features"], f"{stage} evaluated without its cached features"
        from_cache[stage] = np.load(run / stage / "predictions.npz")["probabilities"]
        (run / stage / "cached_top.keras").unlink()
    again = write_config(config, "again.yaml")
    for removed in ("top", "features"):
        if removed == "features":
            for features in (run / "cache").glob("features-*"):
                features.unlink()
        for stage, probabilities in from_cache.items():
            result = cli("evaluate", again, "--stage", stage)
            assert result.exit_code == 0, result.output
            used = json.loads((run / stage / "metrics.json").read_text())["cached_features"]
            assert bool(used) == (removed == "top" and not tta), (removed, used)
            scored = np.load(run / stage / "predictions.npz")["probabilities"]
            np.testing.assert_allclose(probabilities, scored, atol=1e-5)


def test_saved_model_scores_what_the_head_scored(image_folder, write_config, cli):
    """The full model.keras, evaluated on val, matches the head's own val accuracy."""
    config = config_dict(
        image_folder,
        data={"test_dir": None},
        model={"base": "vgg16", "weights": "none", "head": {"dense": []}},
        # 20 short epochs on cached vectors: a head whose answers vary (at 3 epochs and a
        # rate of 0.01, most seeds give one class everywhere)
        finetune={"epochs": 20, "cache": "on", "optimizer": {"learning_rate": 0.001}},
        evaluate={"split": "val"},
    )
    _train(cli, write_config, config, "t")
    run = image_folder.parent / "runs" / "t"
    state = json.loads((run / "finetune" / "stage.json").read_text())
    metrics = json.loads((run / "finetune" / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(state["final"]["val_accuracy"], abs=1e-4)
    # A head that answers one class everywhere would match trivially: the check needs a model
    # whose predictions vary.
    predicted_per_class = np.asarray(metrics["confusion_matrix"]).sum(axis=0)
    assert (predicted_per_class > 0).sum() >= 2, metrics["confusion_matrix"]


def _bottom(base, size, seed=0):
    keras.utils.set_random_seed(seed)
    model = build_classifier(
        build_base_with_weights(base, (size, size), "none"),
        3,
        HeadConfig(),
        "avg",
        base,
        base_training=False,
    )
    freeze_base(model)
    return cut_at_head(model)


def test_cache_is_reused_only_for_the_same_bottom_and_pixels(image_folder, tmp_path, monkeypatch):
    monkeypatch.setattr("tlcli.cache.store.STALE_SECONDS", -1)  # a replaced entry goes at once

    def cache(network_cut, size=32, views=1):
        data = load_stage_data(
            DataConfig(train_dir=image_folder / "train", val_dir=image_folder / "val"),
            (size, size),
            0,
            tmp_path / "images",
            tmp_path,
        )
        return cached_features(
            network_cut,
            data,
            views=views,
            augment=None,
            seed=0,
            batch_size=8,
            cache_dir=tmp_path / "features",
            tag="finetune",
        )

    vgg = _bottom("vgg16", 32)
    first, reused = cache(vgg)
    assert not reused
    again, reused = cache(vgg)
    assert reused
    np.testing.assert_array_equal(first["train"].array, again["train"].array)
    assert not cache(_bottom("vgg16", 32, seed=1))[1], "other weights"
    assert not cache(_bottom("resnet50", 32))[1], "another base"
    assert not cache(_bottom("vgg16", 48), size=48)[1], "another image size"
    # the stale arrays were replaced, not accumulated
    assert len(list((tmp_path / "features").glob("features-finetune-train-*.npy"))) == 1

    vgg = _bottom("vgg16", 32)
    cache(vgg)
    changed = image_folder / "train" / "disc" / "000.jpg"
    changed.write_bytes((image_folder / "train" / "cross" / "000.jpg").read_bytes())
    assert not cache(vgg)[1], "a changed image file"


def test_augmented_views_are_cached_and_train(image_folder, write_config, cli):
    config = config_dict(
        image_folder,
        data={"augment": {"flip": "horizontal", "zoom": 0.1}},
        finetune={"epochs": 4, "cache_views": 3},  # 4 epochs repay 3 cached views
    )
    _train(cli, write_config, config, "views")
    run = image_folder.parent / "runs" / "views"
    state = json.loads((run / "finetune" / "stage.json").read_text())
    assert state["cache"]["used"] and state["cache"]["views"] == 3
    (train_features,) = (run / "cache").glob("features-finetune-train-*.npy")
    array = np.load(train_features, mmap_mode="r")
    assert array.shape == (3, 30, 512)
    assert not np.allclose(array[0], array[1]), "views 1+ are augmented"


def test_augmentation_without_views_trains_uncached(image_folder, write_config, cli):
    config = config_dict(
        image_folder, data={"augment": {"flip": "horizontal"}}, finetune={"epochs": 1}
    )
    result = cli("finetune", write_config(config))
    assert result.exit_code == 0, result.output
    assert "cache_views is not set" in " ".join(result.output.split())
