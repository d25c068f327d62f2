"""Turn a nested dict into the :class:`~chorus.config.schema.Recipe` dataclasses, checking every key.

Unknown keys, wrong types and out-of-range values raise :class:`RecipeError`, whose message names the
dotted key, the offending value and the recipe file (DESIGN.md, "Recipes and runs").
"""
from __future__ import annotations

import dataclasses
import re
import typing
from typing import Any, Literal, Union


_SCI = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


class RecipeError(ValueError):
    """A recipe that cannot be used; the message names the key and the file."""


def _where(source: str | None) -> str:
    return f" in {source}" if source else ""


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is Union:
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, dict):
        return origin.__name__
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp, key: str, source: str | None) -> Any:
    """Return ``value`` as type ``tp`` or raise; ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is Union:
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, key, source)
            except RecipeError:
                continue
    elif origin is Literal:
        if value in typing.get_args(tp):
            return value
    elif tp is type(None):
        if value is None:
            return None
    elif origin is list:
        if isinstance(value, (list, tuple)):
            (item,) = typing.get_args(tp) or (Any,)
            return [_coerce(v, item, f"{key}[{i}]", source) for i, v in enumerate(value)]
    elif origin is dict or tp is dict:
        if isinstance(value, dict):
            args = typing.get_args(tp)
            vt = args[1] if args else Any
            return {str(k): _coerce(v, vt, f"{key}.{k}", source) for k, v in value.items()}
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _SCI.match(value.strip()):   # YAML 1.1 reads 1e-3 as a string
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif dataclasses.is_dataclass(tp):
        return build(tp, value, key, source)
    raise RecipeError(f"{key}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__}){_where(source)}")


def build(cls, data: Any, prefix: str = "", source: str | None = None):
    """Build dataclass ``cls`` from ``data`` (a dict), recursing into sub-sections."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        what = prefix or "the recipe"
        raise RecipeError(f"{what}: expected a mapping of keys, got {data!r}{_where(source)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    for key in data:
        if key not in fields:
            full = f"{prefix}.{key}" if prefix else str(key)
            known = ", ".join(sorted(fields))
            raise RecipeError(f"unknown key '{full}'{_where(source)} (known keys here: {known})")
    kwargs = {}
    for name in fields:
        if name in data:
            full = f"{prefix}.{name}" if prefix else name
            kwargs[name] = _coerce(data[name], hints[name], full, source)
    return cls(**kwargs)


# (dotted key, predicate, what the value must be)
_RANGES = [
    ("data.T", lambda v: v >= 1, ">= 1"),
    ("data.batch_size", lambda v: v >= 1, ">= 1"),
    ("data.eval_batch_size", lambda v: v is None or v >= 1, ">= 1"),
    ("data.workers", lambda v: v >= 0, ">= 0"),
    ("data.size", lambda v: v is None or v >= 1, ">= 1"),
    ("data.cache_gb", lambda v: v >= 0, ">= 0"),
    ("data.retries", lambda v: v >= 0, ">= 0"),
    ("neuron.alpha_init", lambda v: 0.0 < v < 1.0, "strictly between 0 and 1"),
    ("neuron.tau", lambda v: v > 0, "> 0"),
    ("loss.gamma", lambda v: v >= 0, ">= 0"),
    ("loss.temperature", lambda v: v > 0, "> 0"),
    ("loss.p_drop", lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    ("optim.lr", lambda v: v > 0, "> 0"),
    ("optim.weight_decay", lambda v: v >= 0, ">= 0"),
    ("optim.betas", lambda v: len(v) == 2 and all(0 <= b < 1 for b in v), "two numbers in [0, 1)"),
    ("schedule.warmup_epochs", lambda v: v >= 0, ">= 0"),
    ("schedule.step_size", lambda v: v >= 1, ">= 1"),
    ("train.epochs", lambda v: v >= 1, ">= 1"),
    ("train.max_steps", lambda v: v is None or v >= 1, ">= 1"),
    ("train.grad_accum", lambda v: v >= 1, ">= 1"),
    ("train.grad_clip", lambda v: v is None or v > 0, "> 0"),
    ("train.checkpoint_every", lambda v: v >= 0, ">= 0"),
    ("train.keep_last", lambda v: v >= 1, ">= 1"),
    ("train.log_every", lambda v: v >= 1, ">= 1"),
    ("diagnostics.every", lambda v: v >= 0, ">= 0"),
    ("diagnostics.samples", lambda v: v >= 1, ">= 1"),
]


def get(recipe, dotted: str):
    obj = recipe
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def check_ranges(recipe, source: str | None = None) -> None:
    for key, ok, what in _RANGES:
        value = get(recipe, key)
        if not ok(value):
            raise RecipeError(f"{key}: must be {what}, got {value!r}{_where(source)}")
    if recipe.data.shards == "":
        raise RecipeError(f"data.shards: missing (the folder or URL made by `chorus shard`){_where(source)}")
