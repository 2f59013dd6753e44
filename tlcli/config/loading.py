"""Reading a config file: YAML in, `--set` overrides applied, validated, paths checked.

Every mistake becomes a ConfigError whose one-line message names the file, the line and the key:

>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "demo.yaml"
>>> _ = path.write_text("data: {train_dir: sample_data/target/train}\\nmodel: {base: vgg61}\\n")
>>> load_config(path)
Traceback (most recent call last):
...
tlcli.errors.ConfigError: .../demo.yaml:2: model.base: unknown base 'vgg61'; did you mean ...
>>> cfg = load_config(path, ["model.base=vgg16", "finetune.epochs=3"])
>>> cfg.name, cfg.finetune.epochs, cfg.image_size
('demo', 3, (224, 224))
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from tlcli.config.keys import NotASection, set_key
from tlcli.config.messages import StrictLoader, describe, key_lines, yaml_mark, yaml_problem
from tlcli.config.schema import SPECIAL_WEIGHTS, Config
from tlcli.errors import ConfigError


def load_config(
    path: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    sweep_params: list[str] | tuple[str, ...] = (),
) -> Config:
    """Read, override, validate and path-check a config file. Raises ConfigError.

    `sweep_params` are `KEY=SPEC` items added to the sweep section's params (`--param`).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        raw = yaml.load(text, Loader=StrictLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}{yaml_mark(exc)}: not valid YAML: {yaml_problem(exc)}") from None
    if raw is None:
        raise ConfigError(
            f"{path}: the file is empty (a config needs at least data.train_dir and model.base)"
        )
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    raw.setdefault("name", path.stem)
    overridden = apply_overrides(raw, overrides, path)
    overridden.update(_apply_sweep_params(raw, sweep_params, path))
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        lines = key_lines(text)
        raise ConfigError(
            "\n".join(describe(err, Config, path, lines, overridden) for err in exc.errors())
        ) from None
    config = _absolute_paths(config)
    config._source = str(path)
    check_paths(config)
    return config


def apply_overrides(raw: dict, overrides: list[str] | tuple[str, ...], path: Path) -> dict:
    """Apply `KEY=VALUE` overrides in place (values parse as YAML); returns {key: override}."""
    applied = {}
    for item in overrides:
        key, value = _key_and_value(item, "--set", "KEY=VALUE, e.g. finetune.epochs=3")
        try:
            set_key(raw, key, value)
        except NotASection as exc:
            raise ConfigError(f"{path} (--set {item}): {exc}") from None
        applied[key] = item
    return applied


def _apply_sweep_params(raw: dict, items: list[str] | tuple[str, ...], path: Path) -> dict:
    """`KEY=SPEC` items into raw["sweep"]["params"]; returns {key: item} for messages."""
    applied = {}
    for item in items:
        example = "KEY=SPEC, e.g. finetune.optimizer.learning_rate=loguniform(1e-4,1e-2)"
        key, spec = _key_and_value(item, "--param", example)
        if not isinstance(raw.get("sweep"), dict):
            raw["sweep"] = {}
        if not isinstance(raw["sweep"].get("params"), dict):
            raw["sweep"]["params"] = {}
        raw["sweep"]["params"][key] = spec
        applied[f"sweep.params.{key}"] = f"--param {item}"
    return applied


def _key_and_value(item: str, option: str, expected: str) -> tuple[str, object]:
    """'KEY=VALUE' -> (KEY, the value read as YAML, or the text when it is not YAML)."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"{option} {item}: expected {expected}")
    try:
        return key, yaml.safe_load(text)
    except yaml.YAMLError:
        return key, text


def check_paths(config: Config) -> None:
    """Every folder and weights file the config names must exist, checked before any work."""
    data_sections = [("data", config.data)]
    if config.pretrain is not None:
        data_sections.append(("pretrain.data", config.pretrain.data))
    for prefix, data in data_sections:
        for key in ("train_dir", "val_dir", "test_dir"):
            folder = getattr(data, key)
            if folder is not None and not folder.is_dir():
                what = "is not a folder" if folder.exists() else "folder not found"
                raise ConfigError(f"{config.source}: {prefix}.{key}: {what}: {folder}")
    weights = [("model.weights", config.model.weights)]
    if config.pretrain is not None:
        weights.append(("pretrain.weights", config.pretrain.weights))
    for key, value in weights:
        if value not in SPECIAL_WEIGHTS and not Path(value).exists():
            raise ConfigError(
                f"{config.source}: {key}: '{value}' is not imagenet, none, pretrain, "
                "or an existing weights file"
            )


def _absolute_paths(config: Config) -> Config:
    """Relative paths are relative to the current directory; the run dir records them absolute."""

    def resolve(section: BaseModel, keys: tuple[str, ...]) -> None:
        for key in keys:
            value = getattr(section, key)
            if isinstance(value, Path):
                setattr(section, key, value.expanduser().absolute())

    resolve(config, ("output_dir", "cache_dir"))
    resolve(config.data, ("train_dir", "val_dir", "test_dir"))
    if config.pretrain is not None:
        resolve(config.pretrain.data, ("train_dir", "val_dir", "test_dir"))
        if config.pretrain.weights not in SPECIAL_WEIGHTS:
            config.pretrain.weights = str(Path(config.pretrain.weights).expanduser().absolute())
    if config.model.weights not in SPECIAL_WEIGHTS:
        config.model.weights = str(Path(config.model.weights).expanduser().absolute())
    return config
