"""tlcli sweep: the space checked before any trial, trials as run folders, results, best.yaml,
a sweep's folder apart from runs' folders, resuming a killed or interrupted sweep, and two
processes sharing one study."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import (
    assert_plot,
    config_dict,
    run_on_a_terminal,
    run_subprocess,
    shown_resume_command,
    words,
)

SPACE = {
    "finetune.optimizer.learning_rate": "loguniform(1e-4, 1e-2)",
    "model.head.dropout": "uniform(0.0, 0.5)",
}


def _sweep_config(root: Path, trials: int = 3, epochs: int = 2, **sweep) -> dict:
    config = config_dict(root, finetune={"epochs": epochs})
    config["sweep"] = {"trials": trials, "params": dict(SPACE), "pruner": "none", **sweep}
    return config


@pytest.mark.parametrize(
    ("param", "words_expected"),
    [
        ("finetune.optimizer.learnig_rate=loguniform(1e-4,1e-2)", "did you mean"),
        ("finetune.epochs=uniform(1.5,3)", "does not take a float range"),
        ("model.head.dropout=uniform(0.1,1.5)", "less than 1"),
        ("finetune.optimizer.learning_rate=loguniform(1e-2,1e-4)", "must be below high"),
        ("model.base=[vgg16,vgg61]", "unknown base"),
        ("finetune.epochs=normal(3)", "not a search space"),
    ],
)
@pytest.mark.fast
def test_a_bad_space_is_one_line_before_any_trial(
    image_folder, write_config, cli, param, words_expected
):
    path = write_config(_sweep_config(image_folder))
    result = cli("sweep", path, "--param", param)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert "sweep.params." in lines[0] and words_expected in words(lines[0])
    assert not (image_folder.parent / "runs").exists(), "nothing ran"


def test_sweep_writes_trials_results_and_a_best_config_that_reproduces(finished_sweep):
    results = json.loads((finished_sweep / "results.json").read_text())
    rows, best = results["trials"], results["best"]
    assert [r["trial"] for r in rows] == [0, 1, 2, 3]
    for row in rows:
        if row["model.weights"].endswith("other.weights.h5"):
            # a trial that fails is recorded with its error line, and the sweep goes on
            assert row["state"] == "fail" and "does not fit vgg16" in row["error"]
            continue
        assert row["state"] == "complete"
        trial = finished_sweep / "trials" / f"{row['trial']:04d}"  # a normal run folder
        trial_config = yaml.safe_load((trial / "config.yaml").read_text())
        assert trial_config["model"]["head"]["dropout"] == row["model.head.dropout"]
        assert trial_config["cache_dir"] == str(finished_sweep / "cache")
        assert (trial / "finetune" / "model.keras").is_file()
    assert len(list((finished_sweep / "cache").glob("features-finetune-train-*.npy"))) == 1
    assert (finished_sweep / "results.csv").read_text().count("\n") == 5
    assert_plot(finished_sweep / "sweep.png")
    assert best["eval_accuracy"] is not None, "the best trial is evaluated"

    # `tlcli run best.yaml` (done by the fixture) trains the best trial's model again
    again = json.loads((finished_sweep.parent / "t-best" / "finetune" / "stage.json").read_text())
    trial = finished_sweep / "trials" / f"{best['trial']:04d}" / "finetune" / "stage.json"
    trained = json.loads(trial.read_text())
    assert again["final"]["val_accuracy"] == pytest.approx(best["val_accuracy"])
    assert again["final"]["val_loss"] == pytest.approx(trained["final"]["val_loss"], rel=1e-4)


def test_a_sweep_goes_beside_the_run_of_its_config_not_into_it(finished_sweep):
    run = finished_sweep.parent / "t"  # `tlcli run` of the sweep's config, before the sweep
    assert finished_sweep.name == "t-sweep"
    assert (run / "finetune" / "model.keras").is_file()
    left = {"trials", "study.journal", "sweep.json", "results.csv", "results.json", "best.yaml"}
    assert not left & {path.name for path in run.iterdir()}, "the sweep wrote into the run"
    assert left <= {path.name for path in finished_sweep.iterdir()}


def test_the_summary_names_the_best_trial(finished_sweep):
    printed = words((finished_sweep.parent.parent / "sweep-output.txt").read_text())
    best = json.loads((finished_sweep / "results.json").read_text())["best"]
    assert "t: 4 trials (2 failed), by val_accuracy, best first" in printed
    assert f"best: trial {best['trial']:04d}, val_accuracy {best['val_accuracy']:.4f}" in printed


def test_a_run_never_writes_into_a_sweep_folder_nor_a_sweep_into_a_run_folder(
    finished_sweep, write_config, cli, tmp_path
):
    config = yaml.safe_load((finished_sweep / "best.yaml").read_text())
    before = sorted(path.name for path in finished_sweep.iterdir())
    result = cli("run", write_config({**config, "name": "t-sweep"}, "run.yaml"), "--overwrite")
    assert result.exit_code == 2, result.output
    assert words(result.output) == (
        f"error: {finished_sweep}: a sweep's folder, not a run's; use another run name"
    )
    assert sorted(path.name for path in finished_sweep.iterdir()) == before

    # a sweep named u goes to u-sweep: here a run's folder (a copy of t-best, a real run)
    run = shutil.copytree(finished_sweep.parent / "t-best", tmp_path / "runs" / "u-sweep")
    config.update(name="u", output_dir=str(tmp_path / "runs"))
    config["sweep"] = {"trials": 1, "params": {"model.head.dropout": [0.1]}}
    result = cli("sweep", write_config(config, "sweep.yaml"), "--overwrite")
    assert result.exit_code == 2, result.output
    assert f"{run}: a run's folder (its finetune), not a sweep's" in words(result.output)
    assert (run / "finetune" / "model.keras").is_file() and not (run / "trials").exists()


@pytest.mark.fast
def test_without_optuna_sweep_names_the_extra(image_folder, write_config, tmp_path):
    blocker = tmp_path / "no_optuna"
    blocker.mkdir()
    (blocker / "optuna.py").write_text("raise ImportError('no optuna here')\n")
    env = {"PYTHONPATH": f"{blocker}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = run_subprocess("sweep", write_config(_sweep_config(image_folder)), env=env)
    assert result.returncode == 2, result.stderr
    assert "pip install 'tlcli[sweep]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def _start_sweep(config: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tlcli", "sweep", str(config), "--quiet", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
def test_a_killed_sweep_resumes_without_rerunning_finished_trials(image_folder, write_config):
    path = write_config(_sweep_config(image_folder, trials=3, epochs=6))
    trials = image_folder.parent / "runs" / "t-sweep" / "trials"
    process = _start_sweep(path)
    deadline = time.time() + 300
    while not (trials / "0001" / "finetune" / "backup").is_dir():  # trial 1 is mid-way
        assert process.poll() is None and time.time() < deadline, process.stdout.read()
        time.sleep(0.2)
    finished = trials / "0000" / "finetune" / "model.keras"
    stamp = finished.stat().st_mtime_ns
    process.send_signal(signal.SIGKILL)
    process.wait()

    result = run_subprocess("sweep", path, "--resume")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "trial 1: its process stopped; re-queued" in words(result.stderr)
    assert finished.stat().st_mtime_ns == stamp, "a finished trial is not trained again"
    rows = json.loads((trials.parent / "results.json").read_text())["trials"]
    assert [(r["trial"], r["state"]) for r in rows] == [(i, "complete") for i in range(3)]
    assert rows[1]["number"] != 1, "trial 1 ran again as a re-queued copy, in its own folder"
    state = json.loads((trials / "0001" / "finetune" / "stage.json").read_text())
    assert state["status"] == "finished" and state["resumed_from_epoch"] >= 1


@pytest.mark.slow
def test_ctrl_c_on_a_sweep_names_the_command_that_finishes_it(image_folder, write_config, cli):
    # no sweep section: --param and --trials give the space and the budget
    path = write_config(config_dict(image_folder, finetune={"epochs": 30, "search": "off"}))
    sweep = image_folder.parent / "runs" / "t-sweep"
    backup = sweep / "trials" / "0000" / "finetune" / "backup"
    command = [
        sys.executable, "-m", "tlcli", "sweep", str(path),
        "--param", "finetune.optimizer.learning_rate=[0.001, 0.003]", "--trials", "2",
    ]  # fmt: skip

    code, shown = run_on_a_terminal(command, lambda: any(backup.glob("epoch-*.weights.h5")))

    resume = shown_resume_command(code, shown)
    assert resume == ["tlcli", *command[3:], "--resume"]
    resumed = cli(*resume[1:])
    assert resumed.exit_code == 0, resumed.output
    rows = json.loads((sweep / "results.json").read_text())["trials"]
    assert [(r["trial"], r["state"]) for r in rows] == [(0, "complete"), (1, "complete")]


@pytest.mark.slow
def test_two_processes_share_one_study_and_run_no_trial_twice(image_folder, write_config):
    path = write_config(_sweep_config(image_folder, trials=6, epochs=3))
    first = _start_sweep(path, "--resume")
    second = _start_sweep(path, "--resume")
    outputs = [first.communicate(timeout=600)[0], second.communicate(timeout=600)[0]]
    assert first.returncode == 0 and second.returncode == 0, outputs
    sweep_dir = image_folder.parent / "runs" / "t-sweep"
    rows = json.loads((sweep_dir / "results.json").read_text())["trials"]
    assert sorted(r["trial"] for r in rows) == list(range(6))
    assert all(r["state"] == "complete" for r in rows)
    ran = [line for out in outputs for line in out.splitlines() if line.startswith("trial ")]
    assert sorted(line.split()[1] for line in ran) == [f"{i:04d}" for i in range(6)], ran
    assert all(any(line.startswith("trial ") for line in out.splitlines()) for out in outputs)


@pytest.mark.fast
def test_the_pruner_stops_a_trial_after_the_epoch_it_judges_hopeless():
    import keras
    import numpy as np
    import optuna

    from tlcli.experiments.trial import PruningReporter

    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(2.0))
    reporter = PruningReporter(study.ask(), "val_accuracy")  # accuracy never reaches 2
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    x, y = np.random.rand(16, 4), np.eye(2)[np.arange(16) % 2]
    history = model.fit(x, y, validation_data=(x, y), epochs=5, callbacks=[reporter], verbose=0)
    assert len(history.epoch) == 1 and reporter.pruned_at == 0


@pytest.mark.parametrize(
    ("pruner", "expected"), [("none", "NopPruner"), ("median", "MedianPruner")]
)
@pytest.mark.fast
def test_the_configured_pruner_is_the_studys(
    image_folder, write_config, tmp_path, pruner, expected
):
    from tlcli.config import load_config
    from tlcli.experiments.study import open_storage, open_study

    cfg = load_config(write_config(_sweep_config(image_folder, pruner=pruner)))
    study = open_study(cfg, open_storage(None, tmp_path / "sweep"), "new")
    assert type(study.pruner).__name__ == expected


@pytest.mark.fast
def test_an_unreachable_storage_is_one_line(image_folder, write_config, cli, tmp_path):
    path = write_config(_sweep_config(image_folder))
    url = f"sqlite:///{tmp_path}/no/such/folder/study.db"
    result = cli("sweep", path, "--resume", "--storage", url)
    assert result.exit_code == 2, result.output
    assert words(result.output).startswith(f"error: storage {url}: cannot open it")
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.fast
def test_a_sweep_section_and_a_shared_cache_leave_stage_fingerprints_alone(
    image_folder, write_config, tmp_path
):
    from tlcli.config import load_config, stage_fingerprint

    plain = config_dict(image_folder, unfreeze={"epochs": 1})
    swept = {**_sweep_config(image_folder), "unfreeze": {"epochs": 1}}
    swept["cache_dir"] = str(tmp_path / "shared-cache")
    plain["name"] = swept["name"] = "same"
    a = load_config(write_config(plain, "plain.yaml"))
    b = load_config(write_config(swept, "swept.yaml"))
    for stage in ("finetune", "unfreeze"):
        assert stage_fingerprint(a, stage) == stage_fingerprint(b, stage)
    assert b.cache_path == tmp_path / "shared-cache" and a.cache_path == a.run_dir / "cache"


@pytest.mark.parametrize(
    ("sections", "params", "expected"),
    [
        ({}, {"model.head.dropout": "uniform(0, 0.5)"}, ["model.head.dropout"]),
        ({}, {"finetune.epochs": "int(2, 9)", "seed": [1, 2]}, ["finetune.epochs"]),
        ({"finetune": {"search": "off"}}, {"model.head.dropout": "uniform(0, 0.5)"}, []),
        ({}, {"model.head.dropout": "uniform(0, 0.5)",
              "finetune.optimizer.learning_rate": "loguniform(1e-4, 1e-2)"},
         ["model.head.dropout", "finetune.optimizer.learning_rate"]),
        ({}, {"finetune.label_smoothing": [0.0, 0.1]}, ["finetune.label_smoothing"]),
        ({}, {"finetune.epochs": "int(2, 9)", "data.augment.flip": ["none", "horizontal"]}, []),
        ({"model": {"head": {"dense": [8]}}}, {"finetune.epochs": "int(2, 9)"}, []),
    ],
)  # fmt: skip
def test_a_sweep_says_which_keys_the_head_search_decides(
    image_folder, write_config, sections, params, expected
):
    from tlcli.config import load_config
    from tlcli.experiments.sweep import keys_the_search_decides

    config = config_dict(image_folder, model={"head": {"dense": []}})
    for section, values in sections.items():
        config[section] = {**config[section], **values}
    config["sweep"] = {"params": params}
    assert keys_the_search_decides(load_config(write_config(config))) == expected


@pytest.mark.slow
def test_trials_train_the_recipe_tlcli_run_trains_and_best_yaml_retrains_the_best(
    image_folder, write_config, cli
):
    """A sweep over the finetune learning rate on the default recipe: every trial fits its head
    by the head search as `tlcli run` of the same config does (the rate shapes only the head as
    configured it must beat), and `tlcli run best.yaml` and a trial's own config.yaml retrain
    the trial's model: the same predictions, number for number."""
    config = config_dict(image_folder, model={"head": {"dense": [], "dropout": 0.2}})
    config["sweep"] = {
        "trials": 2,
        "sampler": "grid",
        "pruner": "none",
        "params": {"finetune.optimizer.learning_rate": [1e-3, 1e-2]},
    }
    path = write_config(config)
    runs = image_folder.parent / "runs"
    assert cli("run", path, "-q").exit_code == 0
    result = cli("sweep", path)
    assert result.exit_code == 0, result.output
    assert "finetune.optimizer.learning_rate only shapes the head as configured" in words(
        result.output
    )
    folder = runs / "t-sweep"
    plain = json.loads((runs / "t" / "finetune" / "stage.json").read_text())
    for trial in ("0000", "0001"):
        state = json.loads((folder / "trials" / trial / "finetune" / "stage.json").read_text())
        searched = {k: v for k, v in state["search"].items() if k != "configured_head_cv_accuracy"}
        assert searched == {k: plain["search"][k] for k in searched}, trial  # the same head
        assert state["tta"] == plain["tta"], trial
    best = json.loads((folder / "results.json").read_text())["best"]
    best_trial = folder / "trials" / f"{best['trial']:04d}"
    assert cli("run", folder / "best.yaml", "-q").exit_code == 0
    trial_config = best_trial / "config.yaml"
    assert cli("run", trial_config, "--set", "name=trial-again", "--set", f"output_dir={runs}",
               "-q").exit_code == 0  # fmt: skip
    with np.load(best_trial / "finetune" / "predictions.npz") as trial:
        for again in (runs / "t-best", runs / "trial-again"):
            with np.load(again / "finetune" / "predictions.npz") as retrained:
                assert np.array_equal(retrained["probabilities"], trial["probabilities"]), again
