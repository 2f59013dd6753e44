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
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from tlcli.config.messages import section_type
from tlcli.config.schema import Config, DataOverride


def render_reference() -> str:
    """One table per section: key, type, default, meaning."""
    lines: list[str] = []
    for title, prefix, model in _sections(Config, "", set()):
        lines += ["", f"**{title}**" + (f": {_doc(model)}" if _doc(model) else ""), ""]
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            meaning = (field.description or "").replace("|", "\\|")
            lines.append(
                f"| `{prefix}{name}` | {_type(field.annotation)} | {_default(field)} | {meaning} |"
            )
    return "\n".join(lines).strip() + "\n"


# Sections every training stage shares: documented once, as <stage>.optimizer etc.
SHARED = ("optimizer", "schedule", "early_stopping")


def _sections(model: type[BaseModel], prefix: str, seen: set):
    if model in seen:
        return
    seen.add(model)
    yield (f"`{prefix.rstrip('.')}`" if prefix else "top level"), prefix, model
    for name, field in model.model_fields.items():
        section = section_type(field.annotation)
        if section is None or section is DataOverride:
            continue  # pretrain.data takes the keys of data
        label = f"<stage>.{name}." if name in SHARED else f"{prefix}{name}."
        if typing.get_origin(field.annotation) is dict:
            label = f"{prefix}{name}.<key>."  # a mapping of names to sections
        yield from _sections(section, label, seen)


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


def _default(field) -> str:
    shown = (field.json_schema_extra or {}).get("shown_default")
    if shown:
        return shown
    if field.is_required():
        return "required"
    value = field.default_factory() if field.default is PydanticUndefined else field.default
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
