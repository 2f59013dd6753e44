"""A config means what it says: the run's own resolved config.yaml, run again through the model
card's "Reproduce" command, trains the same model (the head search, flip TTA and the weight mix
included) and scores the same numbers."""

from __future__ import annotations

import json
import re
import shlex

import numpy as np
import pytest
from conftest import config_dict, make_image_folder


def _metrics(run, stage: str) -> dict:
    return json.loads((run / stage / "metrics.json").read_text())


def _state(run, stage: str) -> dict:
    return json.loads((run / stage / "stage.json").read_text())


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """A run on the default recipe: one-layer head (searched), flip TTA, unfreeze with the
    weight mix. Learning rates written out as values equal to the defaults must not matter."""
    from typer.testing import CliRunner

    from tlcli.cli import app

    root = make_image_folder(
        tmp_path_factory.mktemp("reproduce") / "data", {"train": 10, "val": 6, "test": 4}
    )
    config = config_dict(
        root,
        model={"head": {"dense": [], "dropout": 0.2}},
        finetune={"epochs": 2},
        unfreeze={"epochs": 1, "layers": 2},
    )
    path = root.parent / "first.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML: a config as a script would write it
    result = CliRunner().invoke(app, ["run", str(path), "--quiet"])
    assert result.exit_code == 0, result.output
    return root.parent / "runs" / "t"


def test_the_model_cards_command_retrains_the_same_model(first_run):
    from typer.testing import CliRunner

    from tlcli.cli import app

    card = (first_run / "unfreeze" / "MODEL_CARD.md").read_text()
    block = re.search(r"## Reproduce.*?```bash\n(.*?)\n", card, re.S)
    assert block, card
    command = shlex.split(block.group(1))
    assert command[:3] == ["tlcli", "run", str(first_run / "config.yaml")]
    result = CliRunner().invoke(app, [*command[1:], "--quiet"])
    assert result.exit_code == 0, result.output
    again = first_run.parent / "t-again"

    assert _state(again, "finetune")["search"] == _state(first_run, "finetune")["search"]
    assert _state(again, "finetune")["tta"] == _state(first_run, "finetune")["tta"]
    first_mix = _state(first_run, "unfreeze")["weight_mix"]
    assert _state(again, "unfreeze")["weight_mix"]["chosen"] == first_mix["chosen"]
    for stage in ("finetune", "unfreeze"):
        first, second = _metrics(first_run, stage), _metrics(again, stage)
        for key in ("accuracy", "f1_macro", "per_class", "confusion_matrix", "calibration"):
            assert second[key] == first[key], (stage, key)
        with (
            np.load(first_run / stage / "predictions.npz") as a,
            np.load(again / stage / "predictions.npz") as b,
        ):
            assert np.array_equal(a["probabilities"], b["probabilities"]), stage


def test_card_and_report_say_what_decided_the_model(first_run):
    """The head search's choice, flip TTA and the weight mix are in the model card and
    report.html, and the finetune figure shows the search's candidates, not one point."""
    finetune_card = (first_run / "finetune" / "MODEL_CARD.md").read_text()
    chosen = _state(first_run, "finetune")["search"]
    assert "the head was fitted by the head search" in finetune_card
    assert f"L2 {chosen['lambda']:g}" in finetune_card
    assert "0 of 2 epochs" not in finetune_card
    assert "flip test-time augmentation inside the model" in finetune_card
    unfreeze_card = (first_run / "unfreeze" / "MODEL_CARD.md").read_text()
    mix = _state(first_run, "unfreeze")["weight_mix"]
    assert f"ends with the weight mix {mix['chosen']:g} of finetune -> unfreeze" in unfreeze_card
    page = (first_run / "report.html").read_text()
    assert "the head was fitted by the head search" in page and "weight mix" in page
    assert "head search: cross-validated accuracy of each candidate head" in page


def test_doctor_brings_its_findings_into_the_model_card(first_run):
    from typer.testing import CliRunner

    from tlcli.cli import app

    card = first_run / "finetune" / "MODEL_CARD.md"
    assert "Data doctor: not run" in card.read_text()
    result = CliRunner().invoke(app, ["doctor", str(first_run / "config.yaml"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "Data doctor: not run" not in card.read_text()
    assert "Data doctor (" in card.read_text()
