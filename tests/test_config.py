"""Config mistakes: one line naming the file and the key, exit 2, no traceback, no TensorFlow."""

from __future__ import annotations

import pytest
import yaml
from conftest import config_dict, run_subprocess

from tlcli.config import load_config
from tlcli.errors import ConfigError

pytestmark = pytest.mark.fast  # the edit loop's tier (tests/conftest.py)


def _error_line(result) -> str:
    """The single error line of a failed command (CliRunner mixes stderr into output)."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


MISTAKES = [
    # (what to change, key expected in the message, words expected in the message)
    ({"finetune": {"epochs": -1}}, "finetune.epochs", "greater than 0"),
    ({"finetune": {"epoch": 3}}, "finetune.epoch", "did you mean 'epochs'"),
    ({"finetune": {"epochs": "ten"}}, "finetune.epochs", "integer"),
    ({"model": {"base": "vgg61", "weights": "none"}}, "model.base", "unknown base"),
    ({"model": {"base": "vgg16", "weights": "nope.h5"}}, "model.weights", "nope.h5"),
    ({"model": {"base": "vgg16", "pooling": "mean"}}, "model.pooling", "'flatten', 'avg' or 'max'"),
    ({"data": {"train_dir": "/does/not/exist"}}, "data.train_dir", "folder not found"),
    ({"data": {"batch_size": 0}}, "data.batch_size", "greater than 0"),
    ({"data": {"val_split": 0.2}}, "data.val_split", "val_dir or val_split, not both"),
    ({"data": {"image_size": [16, 16]}}, "data.image_size", "too small for vgg16"),
    (
        {"finetune": {"optimizer": {"name": "adam", "nesterov": True}}},
        "finetune.optimizer.nesterov",
        "sgd",
    ),
    ({"finetune": {"optimizer": {"name": "lamb"}}}, "finetune.optimizer.name", "'sgd'"),
    ({"finetune": {"schedule": "linear"}}, "finetune.schedule.name", "'cosine'"),
    ({"unfreeze": {"layers": 0}}, "unfreeze.layers", "positive number"),
    ({"unfreeze": {"layers": 3, "from_block": "block5"}}, "unfreeze.from_block", "one of layers"),
    (
        {
            "model": {"base": "mobilenet_v2", "weights": "none"},
            "unfreeze": {"from_block": "block5"},
        },
        "unfreeze.from_block",
        "no block 'block5' in mobilenet_v2; did you mean 'block_5'?",
    ),
    ({"model": {"base": "vgg16", "weights": "pretrain"}}, "model.weights", "no pretrain section"),
    ({"evaluate": {"split": "test"}, "data": {"test_dir": None}}, "evaluate.split", "no test_dir"),
    ({"name": "a/b"}, "name", "not a folder name"),
    ({"seed": "x"}, "seed", "integer"),
    ({"extra_section": {}}, "extra_section", "unknown key"),
]


@pytest.mark.parametrize(("change", "key", "words"), MISTAKES)
def test_config_mistake_is_one_line_naming_file_and_key(
    image_folder, write_config, cli, change, key, words
):
    config = config_dict(image_folder)
    for section, value in change.items():
        if isinstance(value, dict) and isinstance(config.get(section), dict):
            config[section] = {**config[section], **value}
            config[section] = {k: v for k, v in config[section].items() if v is not None}
        else:
            config[section] = value
    path = write_config(config)
    result = cli("config", path)
    assert result.exit_code == 2
    line = _error_line(result)
    assert str(path) in line
    assert f"{key}:" in line
    assert words in line


def test_yaml_syntax_error_names_line(image_folder, write_config, cli, tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\ndata: {train_dir: [unclosed\n")
    result = cli("config", path)
    assert result.exit_code == 2
    assert f"{path}:" in _error_line(result)
    assert "not valid YAML" in result.output


def test_duplicate_key_is_an_error(tmp_path, cli):
    path = tmp_path / "dup.yaml"
    path.write_text("finetune:\n  epochs: 3\n  epochs: 4\n")
    result = cli("config", path)
    assert result.exit_code == 2
    assert "duplicate key 'epochs'" in _error_line(result)


def test_missing_config_file(cli, tmp_path):
    result = cli("config", tmp_path / "nope.yaml")
    assert result.exit_code == 2
    assert "config file not found" in _error_line(result)


def test_error_names_the_line_in_the_file(image_folder, write_config, cli):
    config = config_dict(image_folder, finetune={"epochs": -5})
    path = write_config(config)
    line = _error_line(cli("config", path))
    number = yaml.safe_dump(config, sort_keys=False).splitlines().index("  epochs: -5") + 1
    assert line.startswith(f"error: {path}:{number}: finetune.epochs")


def test_set_overrides_and_is_named_in_errors(image_folder, write_config, cli):
    path = write_config(config_dict(image_folder))
    ok = cli("config", path, "--set", "finetune.epochs=7", "--set", "data.image_size=[48,48]")
    assert ok.exit_code == 0, ok.output
    resolved = yaml.safe_load(ok.output)
    assert resolved["finetune"]["epochs"] == 7
    assert resolved["data"]["image_size"] == [48, 48]
    bad = cli("config", path, "--set", "finetune.epochs=-2")
    assert bad.exit_code == 2
    assert "(--set finetune.epochs=-2): finetune.epochs:" in _error_line(bad)
    malformed = cli("config", path, "--set", "finetune.epochs")
    assert malformed.exit_code == 2
    assert "expected KEY=VALUE" in _error_line(malformed)


def test_bare_on_and_off_mean_the_cache_modes(image_folder, write_config, tmp_path):
    # PyYAML reads a bare `on` / `off` as a boolean, in a file and in --set alike.
    config = config_dict(image_folder, finetune=None)
    path = tmp_path / "onoff.yaml"
    text = yaml.safe_dump(config) + "finetune:\n  cache: on\nunfreeze:\n  cache: off\n"
    path.write_text(text)
    cfg = load_config(path)
    assert (cfg.finetune.cache, cfg.unfreeze.cache) == ("on", "off")
    cfg = load_config(path, ["finetune.cache=off", "unfreeze.cache=on"])
    assert (cfg.finetune.cache, cfg.unfreeze.cache) == ("off", "on")


def test_defaults_fill_a_minimal_config(image_folder, write_config):
    path = write_config(
        {"data": {"train_dir": str(image_folder / "train")}, "model": {"base": "resnet50"}}
    )
    cfg = load_config(path)
    assert cfg.name == "config"  # from the file name
    assert cfg.data.val_split == 0.2  # a validation set even when none is given
    assert cfg.image_size == (224, 224)  # the base's default
    assert cfg.model.weights == "imagenet"
    assert cfg.unfreeze is None and cfg.pretrain is None
    assert cfg.defined_stages() == ["finetune"]


def test_pretrain_data_override_does_not_inherit_target_splits(image_folder, write_config):
    config = config_dict(
        image_folder,
        pretrain={"data": {"train_dir": str(image_folder / "train")}, "epochs": 1},
    )
    cfg = load_config(write_config(config))
    source = cfg.stage_data("pretrain")
    assert source.val_dir is None and source.val_split == 0.2
    assert source.batch_size == cfg.data.batch_size
    assert cfg.pretrain.head.dense == [16]  # the model's head by default


def test_relative_paths_resolve_from_the_working_directory(image_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "rel.yaml"
    path.write_text("data: {train_dir: data/train}\nmodel: {base: vgg16}\n")
    cfg = load_config(path)
    assert cfg.data.train_dir == image_folder / "train"
    assert cfg.output_dir == tmp_path / "runs"


def test_config_errors_do_not_load_tensorflow(image_folder, write_config):
    """A config error stays instant in every command that reads a config: no TensorFlow."""
    path = write_config(config_dict(image_folder, finetune={"epochs": 0}))
    commands = ["config", "run", "pretrain", "finetune", "unfreeze", "evaluate", "lr-find"]
    commands += ["sweep", "doctor", "preflight"]
    probe = (
        "import sys\n"
        "from tlcli.cli import app\n"
        "from typer.testing import CliRunner\n"
        f"for command in {commands!r}:\n"
        f"    r = CliRunner().invoke(app, [command, {str(path)!r}])\n"
        "    assert r.exit_code == 2, (command, r.output)\n"
        "    assert 'finetune.epochs' in r.output, (command, r.output)\n"
        "    loaded = {'tensorflow', 'keras'} & set(sys.modules)\n"
        "    assert not loaded, f'{command}: a config error loaded {loaded}'\n"
        "print('ok')\n"
    )
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout.strip() == "ok", done.stderr


def test_cli_subprocess_exit_code_and_stderr(image_folder, write_config):
    path = write_config(config_dict(image_folder, model={"base": "vgg16", "weights": "x.h5"}))
    done = run_subprocess("finetune", path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "model.weights" in done.stderr


@pytest.mark.parametrize("text", ["", "\n# nothing set yet\n"])
def test_an_empty_config_file_is_one_line_saying_so(tmp_path, cli, text):
    path = tmp_path / "my.yaml"
    path.write_text(text)
    result = cli("run", path)
    assert result.exit_code == 2
    assert _error_line(result) == (
        f"error: {path}: the file is empty (a config needs at least data.train_dir and model.base)"
    )


def test_load_config_raises_config_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)
