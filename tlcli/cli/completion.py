"""Shell completion for what Typer cannot know by itself: config files and `--set` keys.

Typer completes commands, options and the values of Literal-typed options (`--stage`,
`--format`, `--quantize`); `tlcli --install-completion` installs its script for bash, zsh or
fish. The functions here run on every TAB in a fresh `tlcli` process, so they read only the
file system and the pydantic schema: never TensorFlow (`tests/test_completion.py` checks).

>>> complete_config_file("configs/quickstart_s")
['configs/quickstart_scratch.yaml']
>>> [key for key, _ in complete_set_key("finetune.ep")]
['finetune.epochs=']
>>> [value for value, _ in complete_set_key("run.mixed_precision=b")]
['run.mixed_precision=bfloat16']
"""

from __future__ import annotations

import types
import typing
from functools import cache
from pathlib import Path

from tlcli.bases import base_names

CONFIG_SUFFIXES = (".yaml", ".yml")
MAX_DESCENT = 5  # folders entered when a folder is the only match


def complete_config_file(incomplete: str) -> list[str]:
    """YAML files and folders that start with `incomplete`; a lone folder is entered.

    Nothing matching leaves the shell to its own file completion.
    """
    matches = _config_candidates(incomplete)
    for _ in range(MAX_DESCENT):
        if len(matches) != 1 or not matches[0].endswith("/"):
            break
        inside = _config_candidates(matches[0])
        if not inside:
            break
        matches = inside
    return matches


def complete_set_key(incomplete: str) -> list[tuple[str, str]]:
    """`KEY=` for every config key that starts with `incomplete`, with its description; after
    `KEY=`, the values the key takes when they are few (choices, true/false)."""
    keys = config_keys()
    key, equals, value = incomplete.partition("=")
    if equals:
        choices = keys[key][1] if key in keys else ()
        return [(f"{key}={choice}", "") for choice in choices if choice.startswith(value)]
    return [
        (f"{name}=", help_text) for name, (help_text, _) in keys.items() if name.startswith(key)
    ]


@cache
def config_keys() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Every dotted key `--set` takes: {key: (description, choices)}, from the pydantic schema.

    >>> config_keys()["model.pooling"]
    ('base output -> vector', ('flatten', 'avg', 'max'))
    """
    # imported for a `--set` key only: completing a file or a command loads no pydantic
    from tlcli.config.keys import MAPPING_NAME, schema_keys
    from tlcli.config.schema import Config

    keys = {
        key.key: (key.description, _choices(key.annotation))
        for key in schema_keys(Config)
        # sections are not values; the names in a mapping (sweep.params) are the user's own
        if key.section is None and MAPPING_NAME not in key.key
    }
    # A string checked by a validator, not a Literal: its choices come from the registry.
    keys["model.base"] = (keys["model.base"][0], tuple(base_names()))
    return keys


def _choices(annotation) -> tuple[str, ...]:
    """The values a key takes when they can be listed: a Literal's, true/false, or both (also
    inside `X | None`); none when any other value is allowed too (`int | Literal["all"]`)."""
    if annotation is bool:
        return ("true", "false")
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return tuple(str(value) for value in args)
    if origin is typing.Annotated:
        return _choices(args[0])
    if origin not in (typing.Union, types.UnionType):
        return ()
    alternatives = [_choices(arg) for arg in args if arg is not type(None)]
    if not all(alternatives):
        return ()
    return tuple(dict.fromkeys(choice for found in alternatives for choice in found))


def _config_candidates(incomplete: str) -> list[str]:
    head = incomplete[: incomplete.rfind("/") + 1]  # what is typed up to the last slash
    prefix = incomplete[len(head) :]
    folder = Path(head or ".").expanduser()
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    found = []
    for entry in entries:
        name = entry.name
        if not name.startswith(prefix) or (name.startswith(".") and not prefix.startswith(".")):
            continue
        if entry.is_dir():
            found.append(f"{head}{name}/")
        elif entry.suffix.lower() in CONFIG_SUFFIXES:
            found.append(f"{head}{name}")
    return found
