"""tlcli compare (runs, a sweep, a folder that is not a run) and tlcli lr-find."""

from __future__ import annotations

import csv
import io
import json
import warnings

import pytest
from conftest import config_dict, words


def test_compare_two_runs_and_a_sweep(finished_sweep, trained_run, tmp_path, cli):
    runs = finished_sweep.parent  # the sweep t-sweep, and t-best: `tlcli run` of its best.yaml
    (runs / "notes").mkdir(exist_ok=True)
    chart = tmp_path / "chart.png"
    result = cli(
        "compare", trained_run, runs / "t-best", finished_sweep, runs / "notes", "--format", "csv",
        "--sort", "finetune.val_accuracy", "--desc", "--chart", chart,
        "--metric", "finetune.val_accuracy",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "notes: not a run or sweep folder" in words(result.output)
    text = result.output[result.output.index("run,") :]
    table = list(csv.DictReader(io.StringIO(text.split("\nchart:")[0])))
    names = sorted(row["run"].rsplit("/", 2)[-1] for row in table)
    # two runs, and the sweep's two trials that trained (two failed: they are not runs)
    assert len(names) == 4 and names[2:] == ["t", "t-best"], names
    assert {"model.weights", "model.head.dropout", "finetune.accuracy"} <= set(table[0])
    scores = [float(row["finetune.val_accuracy"]) for row in table]
    assert scores == sorted(scores, reverse=True)
    assert chart.stat().st_size > 0

    as_json = cli("compare", str(runs / "t*"), "--format", "json", "--per-class")
    listed = json.loads(as_json.output[as_json.output.index("{") :])["runs"]
    assert any("finetune.f1.disc" in row for row in listed)
    markdown = cli("compare", trained_run, runs / "t-best", "--format", "markdown").output
    assert markdown.splitlines()[0].startswith("| run | ")


def test_lr_find_writes_its_curve_and_a_rate_within_the_range(image_folder, write_config, cli):
    config = config_dict(image_folder, finetune={"epochs": 2})
    result = cli("lr-find", write_config(config), "--start", "1e-5", "--end", "1", "--steps", "30")
    assert result.exit_code == 0, result.output
    run = image_folder.parent / "runs" / "t"
    record = json.loads((run / "lr_find" / "finetune.json").read_text())
    assert 1e-5 <= record["suggestion"] <= 1
    assert f"{record['suggestion']:.2g}" in result.output and record["rule"] in words(result.output)
    assert (run / "lr_find" / "finetune.png").stat().st_size > 0
    assert len(record["rates"]) <= 30 and record["rates"] == sorted(record["rates"])
    assert not (run / "finetune").exists(), "the range test trains nothing it keeps"


@pytest.mark.parametrize("search", ["auto", "off"])
def test_lr_find_says_when_the_head_search_trains_the_head_instead(
    image_folder, write_config, cli, search
):
    config = config_dict(image_folder, model={"head": {"dense": []}}, finetune={"search": search})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = cli("lr-find", write_config(config), "--steps", "20")
    assert result.exit_code == 0, result.output
    said = words(result.output)
    assert "suggested finetune.optimizer.learning_rate: " in said
    note = (
        "warning: finetune.search is auto: this rate trains only the head as configured, which "
        "the head search keeps only when none of its candidates beats it; set "
        "finetune.search: off to train the head with it"
    )
    assert (note in said) == (search == "auto"), said
    assert not [w for w in caught if "shuffle" in str(w.message)], "Keras warned about shuffle"
