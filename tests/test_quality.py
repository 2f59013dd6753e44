"""Better models by default: the head search, the weight mix that keeps unfreeze from ending
below finetune, and test-time augmentation inside the saved model."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from conftest import config_dict, make_image_folder, words

from tlcli.train import head_search_math
from tlcli.train.head_search_conditions import FOLDS


def _weights(run, stage: str) -> list[np.ndarray]:
    return keras.models.load_model(run / stage / "model.keras", compile=False).get_weights()


def _state(run, stage: str) -> dict:
    return json.loads((run / stage / "stage.json").read_text())


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_image_folder(
        tmp_path_factory.mktemp("quality") / "data", {"train": 10, "val": 6, "test": 4}
    )


@pytest.mark.slow  # ~35 s
def test_search_follows_values_never_whether_a_key_was_written(data, write_config, cli):
    """A finetune section that writes out its defaults (optimizer, schedule, label smoothing,
    early stopping) trains the same head as one that leaves them out: the search runs in both.
    `search: off` trains the head as configured instead, with no search.json."""
    head = {"dense": [], "dropout": 0.2}
    written_out = {
        "epochs": 1,
        "optimizer": {"name": "adam", "learning_rate": 1e-3},
        "schedule": {"name": "constant"},
        "label_smoothing": 0.0,
        "early_stopping": None,
    }
    runs = {}
    for name, finetune in {
        "off": {"epochs": 1, "search": "off"},
        "written": written_out,
        "auto": {"epochs": 1},
    }.items():
        config = config_dict(data, name=name, model={"head": head}, finetune=finetune)
        result = cli("run", write_config(config, f"{name}.yaml"))
        assert result.exit_code == 0, result.output
        runs[name] = data.parent / "runs" / name
    auto, written = _weights(runs["auto"], "finetune"), _weights(runs["written"], "finetune")
    assert all(np.array_equal(a, b) for a, b in zip(auto, written, strict=True))
    assert (
        _state(runs["written"], "finetune")["search"] == _state(runs["auto"], "finetune")["search"]
    )
    assert "search" not in _state(runs["off"], "finetune")
    assert not (runs["off"] / "finetune" / "search.json").exists()

    chosen = _state(runs["auto"], "finetune")["search"]
    assert chosen["lambda"] in head_search_math.LAMBDAS
    searched = json.loads((runs["auto"] / "finetune" / "search.json").read_text())
    assert len(searched["candidates"]) == 2 * len(head_search_math.LAMBDAS)  # with mirror images
    off = _weights(runs["off"], "finetune")
    assert not np.array_equal(auto[-1], off[-1]), "the searched head is another head"


def test_a_search_that_finds_nothing_better_keeps_the_head_as_configured(
    data, write_config, cli, monkeypatch
):
    """Only a useless candidate (an L2 so strong the head learns nothing): the head as
    configured, scored on the same folds, wins, and the stage trains it as `search: off` does."""
    monkeypatch.setattr(head_search_math, "LAMBDAS", (1e6,))
    head = {"dense": [], "dropout": 0.2}
    runs = {}
    for name, finetune in {"plain-off": {"search": "off"}, "plain-auto": {}}.items():
        config = config_dict(data, name=name, model={"head": head, "tta": "off"},
                             finetune={"epochs": 4, **finetune})  # fmt: skip
        result = cli("run", write_config(config, f"{name}.yaml"))
        assert result.exit_code == 0, result.output
        runs[name] = data.parent / "runs" / name
    said = words(result.output)
    assert "head search: no candidate beat the head as configured" in said
    searched = json.loads((runs["plain-auto"] / "finetune" / "search.json").read_text())
    assert searched["kept"] == "the head as configured"
    assert searched["configured_head_cv_accuracy"] > searched["chosen"]["cv_accuracy"]
    state = _state(runs["plain-auto"], "finetune")
    assert "search" not in state and state["tta"] is None
    assert state["epochs"] == 4
    off, auto = _weights(runs["plain-off"], "finetune"), _weights(runs["plain-auto"], "finetune")
    assert all(np.array_equal(a, b) for a, b in zip(off, auto, strict=True))


@pytest.mark.fast
def test_the_baseline_is_scored_on_the_same_folds():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    x = (rng.normal(0, 1.0, (3, 8))[y] + rng.normal(0, 1.0, (60, 8))).astype(np.float32)
    seen = []

    def oracle(fit_rows, held):
        seen.append(len(held))
        return np.eye(3)[y[held]]

    perfect = head_search_math.search(x, y, None, 3, seed=0, baseline=oracle)
    assert sum(seen) == 60 and len(seen) == FOLDS
    assert perfect.baseline_cv_accuracy == 1.0 and not perfect.beats_baseline
    chance = head_search_math.search(
        x, y, None, 3, seed=0, baseline=lambda f, h: np.ones((len(h), 3))
    )
    assert chance.beats_baseline


def test_search_on_a_few_images_per_class_falls_back_with_a_notice(tmp_path, write_config, cli):
    data = make_image_folder(tmp_path / "data", {"train": 2, "val": 1})
    config = config_dict(data, model={"head": {"dense": []}}, finetune={"epochs": 1})
    config["data"].pop("test_dir")
    result = cli("run", write_config(config))
    assert result.exit_code == 0, result.output
    assert "head search off: class 'cross' has 3 images in train + val (5 needed)" in words(
        result.output
    )
    assert "search" not in _state(data.parent / "runs" / "t", "finetune")


@pytest.mark.slow  # two runs with an unfreeze of every VGG16 layer
def test_unfreeze_that_hurts_ends_no_worse_than_finetune_on_validation(data, write_config, cli):
    """A rate far too high wrecks the base; the weight mix keeps what finetune had."""
    finetune = {"epochs": 1}
    # Clipped steps keep the wrecked weights finite: the mix then competes with a bad model, not
    # with NaN probabilities.
    reckless = {"layers": "all", "epochs": 1, "cache": "off",
                "optimizer": {"name": "sgd", "learning_rate": 3.0, "clipnorm": 1.0}}  # fmt: skip
    runs, configs = {}, {}
    for mode in ("auto", "off"):
        config = config_dict(
            data, name=f"mix-{mode}", model={"head": {"dense": []}}, finetune=finetune,
            unfreeze={**reckless, "interpolate": mode},
        )  # fmt: skip
        configs[mode] = write_config(config, f"{mode}.yaml")
        result = cli("run", configs[mode])
        assert result.exit_code == 0, result.output
        runs[mode] = data.parent / "runs" / f"mix-{mode}"
    finetune_val = _state(runs["auto"], "finetune")["final"]["val_accuracy"]
    wrecked_val = _state(runs["off"], "unfreeze")["final"]["val_accuracy"]
    assert wrecked_val < finetune_val, "the constructed case: unfreezing hurts"
    mix = _state(runs["auto"], "unfreeze")["weight_mix"]
    assert mix["val_accuracy"][0] == pytest.approx(finetune_val)  # mix 0 is the finetune model
    assert mix["chosen"] < 1.0
    assert _state(runs["auto"], "unfreeze")["final"]["val_accuracy"] >= finetune_val
    result = cli("evaluate", configs["auto"], "--stage", "unfreeze", "--set", "evaluate.split=val")
    assert result.exit_code == 0, result.output
    evaluated = json.loads((runs["auto"] / "unfreeze" / "metrics-val.json").read_text())
    assert evaluated["accuracy"] >= finetune_val


@pytest.mark.fast
def test_the_search_takes_mirror_images_only_where_they_help():
    """Mirror features that carry the class (photos) are used; ones that do not are refused."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 30)
    centres = rng.normal(0, 1.0, (3, 16))
    x = (centres[y] + rng.normal(0, 1.0, (90, 16))).astype(np.float32)
    mirror_like = (centres[y] + rng.normal(0, 1.0, (90, 16))).astype(np.float32)
    noise = rng.normal(0, 3.0, (90, 16)).astype(np.float32)
    assert head_search_math.search(x, y, mirror_like, 3, seed=0).mirror
    assert not head_search_math.search(x, y, noise, 3, seed=0).mirror


@pytest.mark.parametrize(
    ("setting", "message"),
    [("finetune.search=sometimes", "finetune.search"), ("model.tta=rotate", "model.tta"),
     ("unfreeze.interpolate=yes", "unfreeze.interpolate")],
)  # fmt: skip
@pytest.mark.fast
def test_search_options_are_validated(data, write_config, cli, setting, message):
    config = write_config(config_dict(data, unfreeze={"epochs": 1}))
    result = cli("run", config, "--set", setting)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
