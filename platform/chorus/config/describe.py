"""Every recipe key with its type, default, range and meaning (``chorus train --help-recipe``,
``chorus tune --help-recipe``), and the JSON Schema of a recipe for editors (``--recipe-schema``)."""
from __future__ import annotations

import json
import typing

import annotated_types as at
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

_RULES = {at.Ge: ">= {0.ge}", at.Gt: "> {0.gt}", at.Le: "<= {0.le}", at.Lt: "< {0.lt}",
          at.MinLen: "at least {0.min_length} items", at.MaxLen: "at most {0.max_length} items"}


def _type(tp) -> str:
    args = typing.get_args(tp)
    if typing.get_origin(tp) is typing.Literal:
        return "str"
    if typing.get_origin(tp) is typing.Union:
        return " | ".join(_type(a) for a in args)
    if tp is type(None):
        return "null"
    if typing.get_origin(tp) is typing.Annotated:
        return _type(args[0])
    if args:
        return f"{typing.get_origin(tp).__name__}[{', '.join(_type(a) for a in args)}]"
    return getattr(tp, "__name__", str(tp))


def _range(field) -> str:
    extra = field.json_schema_extra or {}
    if "range" in extra:
        return extra["range"]
    if typing.get_origin(field.annotation) is typing.Literal:
        return " | ".join(typing.get_args(field.annotation))
    if field.annotation is bool:
        return "true | false"
    return ", ".join(fmt.format(m) for m in field.metadata for kind, fmt in _RULES.items() if isinstance(m, kind))


def _default(field) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.get_default(call_default_factory=True)
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value or '""'


def rows(cls: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str, str, str]]:
    """``(dotted key, type, default, range, doc)`` of every key of ``cls``, sections expanded."""
    out = []
    for name, field in cls.model_fields.items():
        key = prefix + name
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            out += rows(field.annotation, key + ".")
        else:
            out.append((key, _type(field.annotation), _default(field), _range(field), field.description or ""))
    return out


def describe(cls: type[BaseModel], title: str = "") -> str:
    """The keys of ``cls`` as an aligned text table."""
    table = [("key", "type", "default", "range", "meaning")] + rows(cls)
    width = [min(max(len(r[i]) for r in table), cap) for i, cap in enumerate((34, 14, 18, 22))]
    lines = [title] if title else []
    for r in table:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, width)) + "  " + r[4])
    return "\n".join(lines)


def json_schema(cls: type[BaseModel]) -> dict:
    """The JSON Schema of a recipe (for the YAML language server: ``# yaml-language-server: $schema=...``)."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **cls.model_json_schema()}
