"""What the repository promises: README's two commands, CI running one of them, every example
config valid, sample_data small. (The generated references: tests/test_docs.py.)"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml
from conftest import REPO, SHARED

from tlcli.config import load_config

pytestmark = pytest.mark.fast  # the edit loop's tier (tests/conftest.py)

README = (REPO / "README.md").read_text(encoding="utf-8")


def _top_commands() -> list[str]:
    """The bash blocks before README's first section heading."""
    top = README.split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", top, re.S)]


def test_readme_opens_with_exactly_two_commands():
    commands = _top_commands()
    assert len(commands) == 2, commands
    install_and_run, install_and_test = commands
    assert "tlcli run configs/quickstart.yaml" in install_and_run
    assert "pip install" in install_and_run and "pip install" in install_and_test
    assert "pytest" in install_and_test


def test_ci_runs_the_readme_test_command_then_the_slow_tier():
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert "-n auto" in _top_commands()[1], "the README's command spreads the tests over the cores"
    at = ci.index(_top_commands()[1])  # a whole line of its own, verbatim
    assert ".venv/bin/pytest -n auto --tier slow" in ci[at + 1 :]


@pytest.mark.parametrize(
    "name",
    [
        "quickstart",
        "quickstart_scratch",
        "feature_transfer",
        "parameter_transfer",
        "adaptive_transfer",
    ],
)
def test_sample_data_configs_are_valid_from_the_repository_root(name, monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = load_config(REPO / "configs" / f"{name}.yaml")
    assert cfg.data.train_dir.is_dir()


@pytest.mark.parametrize("name", ["vgg16_imagenet", "resnet50_imagenet"])
def test_imagenet_configs_are_valid_once_pointed_at_images(name, image_folder):
    cfg = load_config(
        REPO / "configs" / f"{name}.yaml", [f"data.train_dir={image_folder / 'train'}"]
    )
    assert cfg.model.weights == "imagenet" and cfg.image_size == (224, 224)


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared not present")
def test_hymenoptera_config_is_valid(monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = load_config(REPO / "configs" / "hymenoptera_mobilenet_v2.yaml")
    assert cfg.model.base == "mobilenet_v2"


def test_every_config_in_configs_is_covered():
    covered = {
        "quickstart",
        "quickstart_scratch",
        "feature_transfer",
        "parameter_transfer",
        "adaptive_transfer",
        "vgg16_imagenet",
        "resnet50_imagenet",
        "hymenoptera_mobilenet_v2",
    }
    assert {p.stem for p in (REPO / "configs").glob("*.yaml")} == covered


def test_sample_data_is_small_and_reproducible(tmp_path):
    files = [p for p in (REPO / "sample_data").rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 5 * 2**20
    on_disk = subprocess.run(
        ["du", "-sk", str(REPO / "sample_data")], capture_output=True, text=True
    )
    assert int(on_disk.stdout.split()[0]) < 5 * 1024
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "make_sample_data.py"),
            "--out",
            str(tmp_path / "s"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    regenerated = sorted(p.relative_to(tmp_path / "s") for p in (tmp_path / "s").rglob("*.*"))
    assert regenerated == sorted(p.relative_to(REPO / "sample_data") for p in files)
    for relative in regenerated[::50]:
        assert (tmp_path / "s" / relative).read_bytes() == (
            REPO / "sample_data" / relative
        ).read_bytes()


def test_quickstart_config_is_what_readme_describes():
    quickstart = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    assert {"pretrain", "finetune", "unfreeze", "evaluate"} <= set(quickstart)
    assert quickstart["model"]["weights"] == "pretrain"
    scratch = yaml.safe_load((REPO / "configs" / "quickstart_scratch.yaml").read_text())
    assert "pretrain" not in scratch and scratch["model"]["weights"] == "none"
    for stage in ("finetune", "unfreeze"):
        assert scratch[stage] == quickstart[stage]
