"""File-format references generated from the pydantic models that read the files, so they cannot drift.

A model becomes one section per mapping: the root's keys first, then each nested mapping under its
key path (``actions``, ``checks[]``, ``checks[].positions``). Each key gets a row with its type, its
default and a description. The description is the field's own ``description=``, else the comment on
the field's line in the model's source (where this project documents most keys), so the words come from
the code too. Validators that tie keys together (``exactly one of``) are described in the models'
docstrings, which open each section.
"""

from __future__ import annotations

import inspect
import json
import re
import types
import typing
from typing import Any, Literal, Union

from pydantic import BaseModel
from pydantic.fields import FieldInfo

# Validators on Annotated strings, by function name: what the value must be, in words.
VALIDATOR_NAMES = {
    "_vet_pattern": "pattern",
    "_vet_glob": "glob",
    "_parse_length": "pixels or percentage",
    "_vet_scope": "page scope",
    "_words": "non-empty string",
}
CONSTRAINTS = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<", "min_length": "length ≥", "max_length": "length ≤"}
FIELD_COMMENT = re.compile(r"^\s+(\w+)\s*:[^#]*#\s*(.+)$")


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models a field's type holds (itself, or inside list/dict/Optional/Annotated)."""
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _constraints(metadata: list[Any]) -> list[str]:
    found = []
    for item in metadata:
        for attr, sign in CONSTRAINTS.items():
            value = getattr(item, attr, None)
            if value is not None:
                found.append(f"{sign} {value}")
        if getattr(item, "pattern", None):
            found.append(f"matches `{item.pattern}`")
    return found


def type_name(annotation: Any, metadata: list[Any] = ()) -> str:
    """A field's type in words: ``list of pattern``, ``"info" | "low"``, ``number (> 0)``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0], [*metadata, *args[1:]])
    named = [VALIDATOR_NAMES[f.__name__] for m in metadata if (f := getattr(m, "func", None)) and f.__name__ in VALIDATOR_NAMES]
    if named:  # a string (or Length's int | str) that a validator vets: say what it must be
        return named[0]
    limits = _constraints(list(metadata))
    suffix = f" ({', '.join(limits)})" if limits else ""
    if origin in (Union, types.UnionType):
        kinds = [type_name(a) for a in args if a is not type(None)]
        return " or ".join(kinds) + (" or null" if type(None) in args else "") + suffix
    if origin is Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin is list:
        return f"list of {type_name(args[0])}{suffix}"
    if origin is tuple:
        return "[" + ", ".join(type_name(a) for a in args) + "]"
    if origin is dict:
        return f"mapping of {type_name(args[0])} to {type_name(args[1])}"
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return "mapping"
    simple = {str: "string", int: "integer", float: "number", bool: "boolean"}
    return simple.get(annotation, getattr(annotation, "__name__", str(annotation))) + suffix


def default_text(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return "each key's default"
    return f"`{json.dumps(value)}`"


def field_comment(model: type[BaseModel], name: str) -> str:
    """The ``# comment`` on the line that declares ``name``, in the model or the class it inherits it from."""
    for cls in model.__mro__:
        if cls is BaseModel or not (inspect.isclass(cls) and issubclass(cls, BaseModel)):
            continue
        for line in inspect.getsource(cls).splitlines():
            match = FIELD_COMMENT.match(line)
            if match and match.group(1) == name:
                return match.group(2).strip()
    return ""


def _doc(model: type[BaseModel]) -> str:
    doc = model.__doc__ or ""
    if doc == BaseModel.__doc__ or not doc.strip():
        return ""
    return re.sub(r"``(.+?)``", r"`\1`", inspect.cleandoc(doc))


def sections(model: type[BaseModel], path: str = "") -> list[tuple[str, type[BaseModel]]]:
    """(key path, model) for the model and every mapping nested in it, depth first."""
    found = [(path, model)]
    for name, field in model.model_fields.items():
        many = typing.get_origin(field.annotation) is list or any(
            typing.get_origin(a) is list for a in typing.get_args(field.annotation))
        for nested in _models_in(field.annotation):
            found += sections(nested, f"{path}.{name}".lstrip(".") + ("[]" if many else ""))
    return found


def key_rows(model: type[BaseModel]) -> list[str]:
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        description = field.description or field_comment(model, name)
        kind = type_name(field.annotation, field.metadata).replace("|", "\\|")
        rows.append(f"| `{name}` | {kind} | {default_text(field)} | {description} |")
    return rows


def model_reference(model: type[BaseModel], root_title: str) -> str:
    """Markdown: one section per mapping, each a table of its keys."""
    lines: list[str] = []
    for path, nested in sections(model):
        lines += [f"### `{path}`" if path else f"### {root_title}", ""]
        if _doc(nested):
            lines += [_doc(nested), ""]
        lines += [*key_rows(nested), ""]
    return "\n".join(lines)
