"""Reading config YAML strictly, and turning every mistake into one line a user can act on.

Each message names the file, the line when it is known, the `--set` that caused it, and the
dotted key: `configs/x.yaml:12: finetune.epochs: input should be greater than 0 (got -1)`.

>>> key_lines("finetune:\\n  epochs: 3\\n")
{'finetune': 1, 'finetune.epochs': 2}
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from tlcli.config.keys import section_at


def at(key: str, message: str) -> ValueError:
    """An error about `key` (relative to the section being validated), for cross-key checks."""
    return ValueError(f"@{key}@{message}")


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: PyYAML would silently keep the last one."""


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}'", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates
)


def yaml_mark(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    return f":{mark.line + 1}" if mark is not None else ""


def yaml_problem(exc: yaml.YAMLError) -> str:
    return getattr(exc, "problem", None) or str(exc).splitlines()[0]


def key_lines(text: str) -> dict[str, int]:
    """Map each dotted key of a YAML text to its line number, for error messages."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = f"{prefix}.{key_node.value}" if prefix else str(key_node.value)
                lines[key] = key_node.start_mark.line + 1
                walk(value_node, key)

    if root is not None:
        walk(root, "")
    return lines


def describe(
    err: dict, root: type[BaseModel], path: Path, lines: dict[str, int], overridden: dict[str, str]
) -> str:
    """One line per validation error: file[:line][ (--set ...)]: key: what is wrong.

    Validators that check several keys at once raise `at(key, message)`; the key lands in the
    message as `@key@` and is moved back into the location here.
    """
    key, message = error_key_and_message(err, root)
    line = next((lines[k] for k in _prefixes(key) if k in lines), None)
    where = f"{path}:{line}" if line and key not in overridden else str(path)
    setting = next((overridden[k] for k in _prefixes(key) if k in overridden), None)
    if setting:
        # An override is `KEY=VALUE` from --set, or names its own option (`--param ...`).
        where += f" ({setting})" if setting.startswith("--") else f" (--set {setting})"
    return f"{where}: {key or '(top level)'}: {message}"


def error_key_and_message(err: dict, root: type[BaseModel]) -> tuple[str, str]:
    """The dotted key of one pydantic error and what is wrong there, in words."""
    loc = [str(part) for part in err["loc"] if not str(part).startswith("~")]
    message = _message(err, root, loc)
    if message.startswith("@"):
        relative, _, message = message[1:].partition("@")
        loc += relative.split(".")
    return ".".join(loc), message


def _prefixes(key: str) -> list[str]:
    parts = key.split(".")
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)]


def _message(err: dict, root: type[BaseModel], loc: list[str]) -> str:
    kind, given = err["type"], err.get("input")
    if kind == "extra_forbidden":
        section = section_at(root, loc[:-1])
        known = list(section.model_fields) if section is not None else []
        hint = difflib.get_close_matches(loc[-1], known, n=1)
        did_you_mean = f"; did you mean '{hint[0]}'?" if hint else ""
        return f"unknown key{did_you_mean} (known here: {', '.join(known)})"
    if kind == "missing":
        return "required key is missing"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping of keys, got {_short(given)}"
    message = err["msg"].removeprefix("Value error, ")
    if kind in ("value_error", "assertion_error"):
        return message
    return f"{message[:1].lower()}{message[1:]} (got {_short(given)})"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
