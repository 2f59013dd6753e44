"""tlcli compare (runs, a sweep, a folder that is not a run) and tlcli lr-find."""

from __future__ import annotations

import csv
import io
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import assert_plot, config_dict, words

from tlcli.experiments.lr_suggest import suggest


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
    assert_plot(chart)

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
    rates = record["rates"]  # 1e-5 to 1 in 30 geometric steps, until the loss diverged
    assert 10 <= len(rates) <= 30
    np.testing.assert_allclose(rates, np.geomspace(1e-5, 1, 30)[: len(rates)], rtol=1e-6)
    judged = suggest(rates, record["losses"])  # the curve recorded is the one judged
    assert (record["suggestion"], record["rule"]) == (judged.rate, judged.why)
    assert f"{record['suggestion']:.2g}" in result.output and record["rule"] in words(result.output)
    assert_plot(run / "lr_find" / "finetune.png")
    assert not (run / "finetune").exists(), "the range test trains nothing it keeps"


def _runs_differing_in_five_keys(trained_run: Path, root: Path, count: int = 4) -> list[Path]:
    """`count` copies of the run's config and finetune results, each with other settings."""
    runs = []
    for index in range(1, count + 1):
        run = root / f"lr-{index}"
        (run / "finetune").mkdir(parents=True)
        for name in ("stage.json", "metrics.json"):
            shutil.copyfile(trained_run / "finetune" / name, run / "finetune" / name)
        config = yaml.safe_load((trained_run / "config.yaml").read_text())
        config["seed"] = index
        config["data"]["batch_size"] = 8 * index
        config["model"]["head"]["dropout"] = 0.1 * index
        config["finetune"]["epochs"] = index
        config["finetune"]["optimizer"]["learning_rate"] = 0.00123 * index
        (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        runs.append(run)
    return runs


def test_compare_in_a_pipe_fits_80_columns_and_cuts_no_number(
    trained_run, tmp_path, cli, monkeypatch
):
    monkeypatch.delenv("COLUMNS", raising=False)  # a pipe, as in a CI log: rich's 80 columns
    runs = _runs_differing_in_five_keys(trained_run, tmp_path)
    result = cli("compare", *runs)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(map(len, lines)) <= 80 and "…" not in result.output
    for key, values in {
        "finetune.optimizer.learning_rate": ["0.00123", "0.00246", "0.00369", "0.00492"],
        "data.batch_size": ["8", "16", "24", "32"],
        "model.head.dropout": ["0.1", "0.2", "0.3", "0.4"],
    }.items():
        (row,) = [line for line in lines if f" {key} " in line]  # a row per key, whole
        assert [cell.strip() for cell in row.split("│")[2:-1]] == values, row


def test_compare_headers_name_the_stage_when_wide(trained_run, tmp_path):
    import io

    from tlcli.console import Console
    from tlcli.experiments.compare import compare, render

    printed = io.StringIO()
    runs = _runs_differing_in_five_keys(trained_run, tmp_path)
    render(compare(runs), "table", Console(file=printed, width=240))
    header = next(line for line in printed.getvalue().splitlines() if "┃ run" in line)
    names = [cell.strip() for cell in header.strip("┃").split("┃")]
    assert names[:6] == [
        "run", "seed", "data.batch_size", "model.dropout", "finetune.epochs",
        "finetune.learning_rate",
    ]  # fmt: skip
    assert {"finetune.accuracy", "finetune.val_accuracy", "finetune.seconds"} <= set(names)
    assert "…" not in printed.getvalue()


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
