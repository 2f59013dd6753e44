"""The config's keys, from one walk of the pydantic schema: every dotted key with its field.

The config reference, `--set` completion, the sweep's key check and the error messages all read
the schema through these functions, so a section (`X | None`, the `model.head` union, a mapping
of names to sections) is understood the same way everywhere.

>>> from tlcli.config.schema import Config
>>> key = find_key(Config, "finetune.optimizer.learning_rate")
>>> key.description, key.default
('initial rate (unfreeze: 1e-5)', 0.001)
>>> [k.key for k in schema_keys(Config) if k.key.startswith("model.head.")]
['model.head.dense', 'model.head.dropout', 'model.head.activation']
>>> find_key(Config, "finetune.epoch")
Traceback (most recent call last):
...
tlcli.config.keys.UnknownKey: finetune.epoch; did you mean 'finetune.epochs'?
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

# Stands for the user's name in a mapping of names to sections (`sweep.params.<key>.low`).
MAPPING_NAME = "<key>"


@dataclass(frozen=True)
class SchemaKey:
    """One key of the schema: its dotted name, its field, and the section it opens, if any."""

    key: str
    field: FieldInfo
    section: type[BaseModel] | None  # the section class inside the annotation
    mapping: bool  # a mapping of the user's names to `section`s

    @property
    def name(self) -> str:
        return self.key.rpartition(".")[2]

    @property
    def annotation(self) -> Any:
        return self.field.annotation

    @property
    def description(self) -> str:
        return self.field.description or ""

    @property
    def default(self) -> Any:
        """The default value (a default factory called); PydanticUndefined when required."""
        return self.field.get_default(call_default_factory=True)

    @property
    def prefix(self) -> str:
        """What the keys of the section it opens start with: `data.`, `sweep.params.<key>.`."""
        return f"{self.key}.{MAPPING_NAME}." if self.mapping else f"{self.key}."


class UnknownKey(ValueError):
    """A dotted key the schema does not have; `hint` names the closest one that exists."""

    def __init__(self, key: str, suggestion: str | None) -> None:
        self.key = key
        self.hint = f"; did you mean '{suggestion}'?" if suggestion else ""
        super().__init__(f"{key}{self.hint}")


class NotASection(ValueError):
    """Setting a dotted key met a value that is not a section on the way (`key` names it)."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"{key} is not a section")


def schema_keys(root: type[BaseModel], prefix: str = "") -> Iterator[SchemaKey]:
    """Every key of `root`, depth first in field order; a section's key comes before its own."""
    for found in section_keys(root, prefix):
        yield found
        if found.section is not None:
            yield from schema_keys(found.section, found.prefix)


def section_keys(section: type[BaseModel], prefix: str = "") -> list[SchemaKey]:
    """The keys of one section, not of the sections inside it, named `<prefix><field>`."""
    return [_key(f"{prefix}{name}", field) for name, field in section.model_fields.items()]


def find_key(root: type[BaseModel], key: str, hidden: Sequence[str] = ()) -> SchemaKey:
    """The field of a dotted key; UnknownKey when `root` has none (names in `hidden` neither).

    A mapping is a key of its own: the user's names inside it are not dotted keys.
    """
    model: type[BaseModel] | None = root
    parts = key.split(".")
    for depth, part in enumerate(parts):
        fields = {n: f for n, f in _fields(model).items() if n not in hidden}
        if part not in fields:
            hint = difflib.get_close_matches(part, list(fields), n=1)
            raise UnknownKey(key, ".".join([*parts[:depth], hint[0]]) if hint else None)
        found = _key(".".join(parts[: depth + 1]), fields[part])
        if depth == len(parts) - 1:
            return found
        model = None if found.mapping else found.section
    raise AssertionError("unreachable: a key has at least one part")


def section_at(root: type[BaseModel], path: Sequence[str]) -> type[BaseModel] | None:
    """The section class at `path` (a mapping's names included, as in pydantic's error
    locations), or None when the path leads to no section."""
    model: type[BaseModel] | None = root
    parts = iter(path)
    for part in parts:
        field = _fields(model).get(part)
        if field is None:
            return None
        found = _key(part, field)
        if found.mapping:
            next(parts, None)  # the user's name of one entry
        model = found.section
    return model


def set_key(tree: dict[str, Any], key: str, value: Any, *, replace: bool = False) -> None:
    """tree[a][b][c] = value for key 'a.b.c' (as `--set` does), making the missing sections on
    the way. A value in the way that is not a section is a NotASection error, or with `replace`,
    replaced by a section.

    >>> tree = {"model": {"base": "vgg16"}, "unfreeze": None}
    >>> set_key(tree, "unfreeze.layers", 4); tree["unfreeze"]
    {'layers': 4}
    >>> set_key(tree, "model.base.name", "x")
    Traceback (most recent call last):
    ...
    tlcli.config.keys.NotASection: model.base is not a section
    """
    node = tree
    parts = key.split(".")
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is not None and not isinstance(child, dict) and not replace:
            raise NotASection(".".join(parts[: depth + 1]))
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def _key(key: str, field: FieldInfo) -> SchemaKey:
    mapping = typing.get_origin(field.annotation) is dict
    return SchemaKey(key, field, _section_type(field.annotation), mapping)


def _fields(model: type[BaseModel] | None) -> dict[str, FieldInfo]:
    return model.model_fields if model is not None else {}


def _section_type(annotation: Any) -> type[BaseModel] | None:
    """The section class inside an annotation such as `X | None`, the Head union or
    `dict[str, X]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) + getattr(annotation, "__metadata__", ()):
        found = _section_type(arg)
        if found is not None:
            return found
    return None
