"""Render the config schema as the Markdown config reference of the documentation.

The pydantic models in schema.py are the only place keys, types and defaults are written down;
docs/reference/config.md is generated from them (`python scripts/gen_docs.py`) and a test checks
it is current.

>>> "| `finetune.epochs` | int | `10` |" in render_reference()
True
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from tlcli.config.keys import SchemaKey, schema_keys, section_keys
from tlcli.config.schema import Config, DataOverride


def render_reference() -> str:
    """One table per section: key, type, default, meaning."""
    lines: list[str] = []
    for prefix, section in _documented_sections():
        title = f"`{prefix.rstrip('.')}`" if prefix else "top level"
        lines += ["", f"**{title}**" + (f": {_doc(section)}" if _doc(section) else ""), ""]
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for key in section_keys(section, prefix):
            meaning = key.description.replace("|", "\\|")
            lines.append(f"| `{key.key}` | {_type(key.annotation)} | {_default(key)} | {meaning} |")
    return "\n".join(lines).strip() + "\n"


# Sections every training stage shares: documented once, as <stage>.optimizer etc.
SHARED = ("optimizer", "schedule", "early_stopping")


def _documented_sections() -> Iterator[tuple[str, type[BaseModel]]]:
    """(prefix, section class) of each section, once, where it first appears; `pretrain.data`
    takes the keys of `data`."""
    yield "", Config
    seen: set[type[BaseModel]] = {Config}
    for key in schema_keys(Config):
        if key.section is None or key.section in seen or key.section is DataOverride:
            continue
        seen.add(key.section)
        yield (f"<stage>.{key.name}." if key.name in SHARED else key.prefix), key.section


def _type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type(args[0])
    if origin is Literal:
        return " \\| ".join(f"`{a}`" if not isinstance(a, bool) else str(a).lower() for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [_type(a) for a in args if a is not type(None)]
        optional = " (optional)" if type(None) in args else ""
        return " \\| ".join(parts) + optional
    if origin is dict:
        return "mapping"
    if origin in (list, tuple):
        inner = [_type(a) for a in args if a is not Ellipsis]
        return f"[{', '.join(inner)}]" if origin is tuple else f"list of {inner[0]}"
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return "mapping"
        if issubclass(annotation, Path):
            return "path"
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _default(key: SchemaKey) -> str:
    shown = (key.field.json_schema_extra or {}).get("shown_default")
    if shown:
        return shown
    if key.field.is_required():
        return "required"
    value = key.default
    if isinstance(value, BaseModel):
        changed = value.model_dump(exclude_defaults=True)
        return f"`{changed}`".replace("'", "") if changed else "defaults"
    if value is None:
        return "-"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Path):
        value = str(value)
    return f"`{value!r}`".replace("'", "") if not isinstance(value, str) else f"`{value}`"


def _doc(model: type[BaseModel]) -> str:
    return (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
