"""Shell completion, as bash, zsh and fish ask for it: the app run with Typer's completion
variables (in-process; in a fresh process of the installed entry point to check that completing
never imports TensorFlow, and from a real bash through the script README installs)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tlcli.cli import app
from tlcli.cli.completion import complete_config_file, complete_set_key, config_keys

pytestmark = pytest.mark.fast  # the edit loop's tier (tests/conftest.py)

TLCLI = Path(sysconfig.get_path("scripts")) / "tlcli"
COMPLETE_VAR = "_TLCLI_COMPLETE"


def completion_env(shell: str, line: str) -> dict[str, str]:
    """The variables `shell`'s completion script sets to ask `tlcli` to complete `line`."""
    words = line.split() + ([""] if line.endswith(" ") else [])
    variables = {
        "bash": {"COMP_WORDS": " ".join(words), "COMP_CWORD": str(len(words) - 1)},
        "zsh": {"_TYPER_COMPLETE_ARGS": line},
        "fish": {"_TYPER_COMPLETE_ARGS": line, "_TYPER_COMPLETE_FISH_ACTION": "get-args"},
    }[shell]
    return {**variables, COMPLETE_VAR: f"complete_{shell}"}


def complete(shell: str, line: str) -> str:
    """What `tlcli` answers when `shell` asks it to complete `line` (the text before the cursor)."""
    result = CliRunner().invoke(app, [], env=completion_env(shell, line), prog_name="tlcli")
    assert result.exit_code == 0, result.output
    return result.output


def test_set_keys_complete_from_the_schema_without_importing_tensorflow():
    done = subprocess.run(
        [str(TLCLI)],
        env={
            **os.environ,
            **completion_env("bash", "tlcli run c.yaml --set fin"),
            "PYTHONPROFILEIMPORTTIME": "1",  # the import log: `python -X importtime`
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    offered = done.stdout.split()
    assert {"finetune.epochs=", "finetune.optimizer.learning_rate=", "finetune.cache="} <= set(
        offered
    )
    assert all(key.startswith("finetune.") and key.endswith("=") for key in offered)
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()]
    assert "tlcli.config.schema" in imported, "the import log was read"
    assert not [name for name in imported if name.split(".")[0] in ("tensorflow", "keras")]


def test_commands_options_and_literal_values_complete():
    assert "export" in complete("bash", "tlcli ex").split()
    assert {"--format", "--quantize", "--stage", "--overwrite"} <= set(
        complete("bash", "tlcli export runs/x --").split()
    )
    formats = complete("bash", "tlcli export runs/x --format ").split()
    assert formats == ["keras", "savedmodel", "tflite", "onnx"]
    assert complete("bash", "tlcli evaluate c.yaml --stage ").split() == [
        "finetune",
        "unfreeze",
    ]


def test_zsh_and_fish_show_each_key_with_its_description():
    zsh = complete("zsh", "tlcli finetune c.yaml -s finetune.ep")
    assert zsh.strip() == """_arguments '*: :(("finetune.epochs=":"training epochs"))'"""
    fish = complete("fish", "tlcli run c.yaml --set model.po")
    assert fish.strip() == "model.pooling=\tbase output -> vector"
    # After `KEY=`, a key with few values offers them (zsh and fish keep `=` inside the word).
    fish = complete("fish", "tlcli run c.yaml --set model.base=res").split()
    assert fish == ["model.base=resnet101", "model.base=resnet152", "model.base=resnet50"]


def test_set_offers_no_key_inside_a_mapping():
    """A name in `sweep.params` holds dots itself (`finetune.epochs`): keys inside it cannot be
    written as one dotted key, so the sweep section offers its own keys only."""
    assert [key for key, _ in complete_set_key("sweep.")] == [
        "sweep.metric=",
        "sweep.direction=",
        "sweep.trials=",
        "sweep.sampler=",
        "sweep.pruner=",
        "sweep.evaluate=",
        "sweep.stale_after=",
    ]


def test_config_arguments_complete_yaml_files_and_enter_a_lone_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "experiments" / "old").mkdir(parents=True)
    for name in ("experiments/a.yaml", "experiments/b.yml", "experiments/notes.txt", "c.yaml"):
        (tmp_path / name).write_text("name: x\n")
    offered = complete("bash", "tlcli run ex").split()
    assert offered == ["experiments/a.yaml", "experiments/b.yml", "experiments/old/"]
    assert complete("bash", "tlcli config ").split() == ["c.yaml", "experiments/"]
    # Nothing that matches: no answer, and the shell falls back to its own file completion.
    assert complete("bash", "tlcli run zz").strip() == ""
    assert complete("zsh", "tlcli run zz").strip() == "_files"


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_the_bash_script_from_the_readme_completes_in_bash(tmp_path):
    """README: `_TLCLI_COMPLETE=source_bash tlcli > FILE`, then `source FILE` in ~/.bashrc."""
    script = tmp_path / "tlcli-complete.bash"
    env = {**os.environ, "PATH": f"{TLCLI.parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(f"{COMPLETE_VAR}=source_bash tlcli > {script}", shell=True, check=True, env=env)
    ask = (
        f"source {script}; COMP_WORDS=(tlcli run c.yaml --set fin); COMP_CWORD=4; "
        '_tlcli_completion tlcli; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", ask], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "finetune.epochs=" in done.stdout.split()


def test_completion_helpers_directly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "only" / "deeper").mkdir(parents=True)
    (tmp_path / "only" / "deeper" / "run.yaml").write_text("")
    assert complete_config_file("on") == ["only/deeper/run.yaml"]  # two lone folders entered
    assert complete_config_file("missing/") == []
    assert [key for key, _ in complete_set_key("unfreeze.layers=")] == []  # int or "all": open
    assert [key for key, _ in complete_set_key("run.jit_compile=")] == [
        "run.jit_compile=auto",
        "run.jit_compile=true",
        "run.jit_compile=false",
    ]
    assert "pretrain.data.train_dir" in config_keys() and "model.head.dense" in config_keys()
