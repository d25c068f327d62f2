"""What every recipe schema shares: strict sections, one-line field declarations, and the one
translation of a pydantic ``ValidationError`` into an error naming the dotted key, the value and the file.

Sections are pydantic v2 models (docs/architecture.md, "Training": why pydantic). ``strict`` means no
guessing: ``"3"`` is not an int, ``0``/``1`` are not booleans, an int is a float.
"""
from __future__ import annotations

import typing
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from chorus.neurons.params import LIFArgError


class RecipeError(ValueError):
    """A recipe that cannot be used; the message names the key, the value and the file."""

    layout = "{key}: {message}{where}"

    @classmethod
    def at(cls, key: str, message: str, source: str | None = None) -> "RecipeError":
        return cls(cls.layout.format(key=key, message=message, source=source, where=f" in {source}" if source else ""))

    @classmethod
    def unknown(cls, key: str, known, source: str | None = None) -> "RecipeError":
        where = f" in {source}" if source else ""
        return cls(f"unknown key '{key}'{where} (known keys here: {', '.join(sorted(known))})")


class KeyedError(ValueError):
    """Raised inside a validator for one named field of the section (``key``), not the whole section."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(message)


class Section(BaseModel):
    """A recipe section: unknown keys and loose types are errors."""

    model_config = ConfigDict(extra="forbid", strict=True)


class FileSpec(Section):
    """A whole recipe file (training, search or study): validated by :meth:`parse`, it remembers the
    file it came from as ``source``."""

    _source: Optional[str] = PrivateAttr(None)

    @classmethod
    def parse(cls, data: dict, error: type["RecipeError"], source: Optional[str]):
        """``data`` validated; a pydantic error becomes one ``error`` naming the key, the value and ``source``."""
        try:
            spec = cls.model_validate(data)
        except ValidationError as e:
            raise describe_error(cls, e, error, source) from None
        spec._source = source
        return spec

    @property
    def source(self) -> Optional[str]:
        return self._source

    def to_dict(self) -> dict:
        """Plain data (what is saved with a run, a search or a study)."""
        return self.model_dump()


def F(default: Any = ..., doc: str = "", **rules) -> Any:
    """A documented field: ``F(10, "epochs to train", ge=1)`` (rules: pydantic's ge, gt, le, lt, ...)."""
    if "default_factory" in rules:
        return Field(description=doc, **rules)
    return Field(default, description=doc, **rules)


def _dotted(cls, loc: tuple) -> tuple[str, type]:
    """The dotted key of a pydantic error location and the section that holds its last part. List
    indices become ``[i]``, dict keys are kept; union-member tags (``'bool'``, ``'str'``) are dropped."""
    parts: list[str] = []
    node, holder = cls, cls
    for item in loc:
        if isinstance(node, type) and issubclass(node, BaseModel):
            holder, parts = node, parts + [str(item)]
            field = node.model_fields.get(item)
            node = field.annotation if field is not None else None
        elif isinstance(item, int) and parts:
            parts[-1] += f"[{item}]"
        elif typing.get_origin(node) is dict:
            parts, node = parts + [str(item)], None
        else:
            break
    return ".".join(parts), holder


def describe_error(cls, exc: ValidationError, error: type[RecipeError], source: str | None) -> RecipeError:
    """The first error of ``exc`` as an ``error`` naming the key the user wrote, what it must be and
    the value given (a :class:`KeyedError` or the neuron's ``LIFArgError`` names its own field)."""
    err = exc.errors()[0]
    key, holder = _dotted(cls, err["loc"])
    cause = (err.get("ctx") or {}).get("error")
    if err["type"] == "extra_forbidden":
        return error.unknown(key, holder.model_fields, source)
    if err["type"] == "missing":
        return error.at(key, f"missing key ({holder.model_fields[key.rsplit('.', 1)[-1]].description})", source)
    inner = getattr(cause, "key", None) or getattr(cause, "arg", None)
    if inner:
        key = f"{key}.{inner}" if key else inner
        text = f"{cause.rule}, got {cause.value!r}" if isinstance(cause, LIFArgError) else str(cause)
        return error.at(key, text, source)
    msg = str(cause) if cause is not None else err["msg"]
    if msg.startswith("Input should be "):
        value = err.get("input")
        msg = f"must be {msg[len('Input should be '):]}, got {value!r} ({type(value).__name__})"
    return error.at(key, msg, source)
