"""The command line itself: help with examples, version, flags, preflight."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml
from conftest import config_dict, make_image_folder

COMMANDS = [
    "pretrain",
    "finetune",
    "unfreeze",
    "evaluate",
    "run",
    "config",
    "preflight",
    "doctor",
    "report",
    "predict",
    "export",
    "sweep",
    "compare",
    "lr-find",
]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.fast
def test_every_command_help_shows_an_example(cli, command):
    result = cli(command, "--help")
    assert result.exit_code == 0
    assert "Example: tlcli" in result.output


@pytest.mark.parametrize("command", ["", *COMMANDS])
@pytest.mark.fast
def test_help_names_arguments_in_capitals_and_shows_no_type_for_flags(cli, command, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    result = cli(*command.split(), "--help")
    assert result.exit_code == 0
    for noise in ("<bool>", "<list[", "<int range>", "[x>=", "<path>  "):
        assert noise not in result.output, f"{noise!r} in tlcli {command} --help"
    arguments = re.findall(r"\{([^}]*)\}", result.output.split("Usage:")[1].splitlines()[0])
    assert all(name.isupper() for name in arguments), arguments
    if command in ("pretrain", "finetune", "unfreeze", "run", "evaluate", "config", "preflight"):
        assert arguments == ["CONFIG"]


@pytest.mark.fast
def test_top_level_help_lists_every_command_and_version(cli):
    import typer

    from tlcli.cli import app

    registered = list(typer.main.get_command(app).commands)
    assert registered == COMMANDS, "every command is registered, in this order"
    result = cli("--help")
    assert result.exit_code == 0
    # Each command is a row of the Commands panel: its name first, then its summary.
    listed = [
        line.strip("│ ").split()[0]
        for line in result.output.split("Commands")[1].splitlines()
        if line.startswith("│ ") and not line.startswith("│  ")
    ]
    assert listed == COMMANDS
    version = cli("--version")
    assert version.exit_code == 0 and version.output.startswith("tlcli ")


def _help_texts(command, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    """(the command's words, a help text as written) for a click command and its subcommands:
    its docstring, epilog and every parameter's help."""
    texts = [(path, text) for text in (command.help, command.epilog) if text]
    texts += [(path, param.help) for param in command.params if getattr(param, "help", None)]
    for name, sub in getattr(command, "commands", {}).items():
        texts += _help_texts(sub, (*path, name))
    return texts


@pytest.mark.fast
def test_help_shows_every_bracketed_word_it_was_written_with(cli, monkeypatch):
    """Typer renders help as rich markup, where `[doctor]` is a style tag and vanishes unless
    written `\\[doctor]`: every bracketed text of every help must show in --help."""
    import typer

    from tlcli.cli import app

    monkeypatch.setenv("COLUMNS", "1000")  # one line per paragraph: nothing wrapped apart
    texts = _help_texts(typer.main.get_command(app))
    assert len(texts) > 100
    shown: dict[tuple[str, ...], str] = {}
    missing = []
    for path, text in texts:
        if path not in shown:
            result = cli(*path, "--help")
            assert result.exit_code == 0, result.output
            shown[path] = " ".join(result.output.replace("│", " ").split())
        for bracketed in re.findall(r"\[[^\]]*\]", text.replace("\\[", "[")):
            if " ".join(bracketed.split()) not in shown[path]:
                missing.append(f"tlcli {' '.join(path)}: {bracketed}")
    assert not missing, missing


@pytest.mark.fast
def test_resume_and_overwrite_exclude_each_other(image_folder, write_config, cli):
    result = cli("run", write_config(config_dict(image_folder)), "--resume", "--overwrite")
    assert result.exit_code == 2
    assert "exclude each other" in result.output


@pytest.mark.fast
def test_unknown_option_is_a_usage_error(image_folder, write_config, cli):
    config = write_config(config_dict(image_folder))  # a valid config: only the option is wrong
    result = cli("run", config, "--bogus")
    assert result.exit_code == 2
    assert "No such option: --bogus" in result.output
    assert not (image_folder.parent / "runs").exists(), "nothing ran"


@pytest.mark.fast
def test_preflight_finds_leaks_duplicates_and_bad_files(tmp_path, write_config, cli):
    root = make_image_folder(tmp_path / "data", {"train": 6, "val": 3})
    leaked = root / "val" / "disc" / "000.jpg"
    shutil.copy(leaked, root / "train" / "disc" / "copy_of_val.jpg")
    shutil.copy(root / "train" / "cross" / "001.png", root / "train" / "cross" / "twin.png")
    (root / "train" / "square" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    path = write_config(config_dict(root, data={"test_dir": None}))
    result = cli("preflight", path)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "leak across splits" in text and "copy_of_val.jpg" in text
    assert "duplicates within train" in text and "twin.png" in text
    assert "broken.jpg" in text
    assert "3 problem(s) found" in text
    assert cli("preflight", path, "--strict").exit_code == 1
    assert not (tmp_path / "runs").exists(), "preflight writes nothing"


@pytest.mark.fast
def test_preflight_reads_at_80_columns_and_counts_usable_images(
    tmp_path, write_config, cli, monkeypatch
):
    monkeypatch.setenv("COLUMNS", "80")
    classes = tuple(f"shirt_with_long_sleeves_{i}" for i in range(10))
    root = make_image_folder(tmp_path / "data", {"train": 3, "val": 1}, classes=classes, size=32)
    (root / "train" / classes[3] / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    (root / "train" / classes[3] / "empty.png").write_bytes(b"")
    result = cli("preflight", write_config(config_dict(root, data={"test_dir": None})))
    assert result.exit_code == 0, result.output
    table = [line for line in result.output.splitlines() if line[:1] in "┏┃┡│├└"]
    assert table and max(len(line) for line in table) <= 80, result.output
    assert "…" not in result.output
    rows = {cells[0]: cells[1:] for line in table if (cells := line.strip("│ ").split(" │ "))}
    rows = {name.strip(): [c.strip() for c in counts] for name, counts in rows.items()}
    assert all(rows[name] == ["3", "1"] for name in classes), result.output
    assert rows["usable images"] == ["30", "10"]
    assert rows["unusable files"] == ["2", "0"]
    assert "2 problem(s) found" in result.output


@pytest.mark.fast
def test_preflight_on_a_clean_dataset(image_folder, write_config, cli):
    result = cli("preflight", write_config(config_dict(image_folder)), "--strict")
    assert result.exit_code == 0, result.output
    assert "no problems found" in result.output


# Modules that paths needing no TensorFlow import, and the path: importing them must not load it
# (the modules that need Keras import it inside the functions that use it, after
# `import_tensorflow()` has started TensorFlow quietly).
TENSORFLOW_FREE_IMPORTS = {
    "tlcli.cli": "--help, completion and config errors",
    "tlcli.insight.reports": "`tlcli report` (it redraws from the run folder)",
    "tlcli.insight.doctor": "`tlcli doctor` without its extra",
    "tlcli.serve.predict": "a prediction with an ONNX or LiteRT model",
    "tlcli.serve.export": "export's argument errors",
    "tlcli.experiments.sweep": "sweep's config errors",
    "tlcli.experiments.compare": "`tlcli compare`",
}


@pytest.mark.fast
def test_modules_on_paths_without_tensorflow_import_none():
    probe = (
        "import importlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    importlib.import_module(name)\n"
        "    if {'tensorflow', 'keras'} & set(sys.modules):\n"
        "        sys.exit(name)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *TENSORFLOW_FREE_IMPORTS], capture_output=True, text=True
    )
    offender = done.stderr.strip().splitlines()[-1] if done.returncode else ""
    why = TENSORFLOW_FREE_IMPORTS.get(offender, "")
    assert done.returncode == 0, f"importing {offender} loads TensorFlow, and {why} must not"


# TensorFlow's C++ log lines (absl's format: severity, date, time, thread, file:line]) and its
# start-up notices.
TF_LOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d|absl::InitializeLog|This TensorFlow binary")
# Runs tlcli with a note of TF_CPP_MIN_LOG_LEVEL as TensorFlow starts to load (argv[1]: where).
WATCHED_TLCLI = """
import os, sys
class Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" and not os.path.exists(NOTE):
            with open(NOTE, "w") as note:
                note.write(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "unset"))
NOTE = sys.argv.pop(1)
sys.meta_path.insert(0, Watch())
from tlcli.cli import main
main()
"""


@pytest.mark.slow
def test_evaluate_and_export_print_no_tensorflow_log_line(trained_run, tmp_path):
    """TensorFlow's start-up notices and the errors its ops log at run time (oneDNN's, on a CPU
    without AVX-512) stay out of every command's output: each loads TensorFlow quietly, its
    C++ log level already set (TensorFlow reads it once, as it loads)."""
    run = tmp_path / "runs" / "copy"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("export"))
    config = yaml.safe_load((run / "config.yaml").read_text())
    config.update(output_dir=str(run.parent), name=run.name)
    (tmp_path / "copy.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = {
        k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TLCLI_TF_LOGS")
    }
    commands = {
        "calibrate": ["evaluate", tmp_path / "copy.yaml", "--calibrate"],
        "evaluate": ["evaluate", tmp_path / "copy.yaml"],
        "export": ["export", run, "--format", "tflite"],
    }
    for name, command in commands.items():
        note = tmp_path / f"{name}.level"
        done = subprocess.run(
            [sys.executable, "-c", WATCHED_TLCLI, note, *map(str, command)],
            capture_output=True, text=True, env=env, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        logged = [line for line in done.stderr.splitlines() if TF_LOG_LINE.search(line)]
        assert not logged, (name, logged)
        assert note.read_text() == "3", name
