"""Recipe files and the one override mechanism, ``key.sub=value`` (docs/method.md, "Recipes and runs").

Values are YAML scalars read as YAML 1.2 reads them: ``1e-3`` is a float (YAML 1.1, PyYAML's default,
reads it as a string), for recipes, search recipes and overrides alike. Overrides apply to the mapping
before validation, so they are checked exactly like the file; below a ``flat`` section (a search
recipe's ``fixed``, ``space``) the rest of the key is one dotted key (``fixed.train.epochs=2``).
"""
from __future__ import annotations

import copy
import os
import re
from typing import Any, Iterable

import yaml

from chorus.config.base import RecipeError


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
                              list("-+0123456789."))


def yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


def read_yaml(path: str, error: type = RecipeError, what: str = "recipe", command: str = "train") -> dict:
    """The mapping in ``path``; a missing, unparsable, empty or non-mapping file is an ``error`` (the
    empty one points at ``chorus COMMAND --help-recipe``)."""
    if not os.path.isfile(path):
        raise error(f"{what} file not found: {path}")
    with open(path) as f:
        try:
            data = yaml_load(f)
        except yaml.YAMLError as e:
            raise error(f"{path}: not valid YAML ({e})") from None
    if data is None:
        raise error(f"{path}: empty {what} (`chorus {command} --help-recipe` lists its keys)")
    if not isinstance(data, dict):
        raise error(f"{path}: a {what} must be a mapping of sections, got {type(data).__name__}")
    return data


def parse_override(text: str, error: type = RecipeError) -> tuple[list[str], Any]:
    """``"optim.lr=0.05"`` → ``(["optim", "lr"], 0.05)``."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not p for p in key.split(".")):
        raise error(f"override {text!r}: expected key.sub=value")
    try:
        value = yaml_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise error(f"override {text!r}: the value is not valid YAML ({e})") from None
    return key.split("."), value


def apply_overrides(data: dict, overrides: Iterable[str], source: str | None = None, error: type = RecipeError,
                    flat: tuple = ()) -> dict:
    """A copy of ``data`` with every ``key.sub=value`` applied (new keys are created here and refused
    by validation if the schema does not know them)."""
    out = copy.deepcopy(data)
    for text in overrides or ():
        parts, value = parse_override(text, error)
        node, i = out, 0
        while i < len(parts) - 1:
            child = node.get(parts[i])
            if child is None:
                child = node[parts[i]] = {}
            if not isinstance(child, dict):
                where = ".".join(parts[:i + 1])
                raise error(f"override {text!r}: '{where}' is a value, not a section"
                            + (f" in {source}" if source else ""))
            node, i = child, i + 1
            if tuple(parts[:i]) in flat:
                break
        node[".".join(parts[i:])] = value
    return out


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 0.1}}`` → ``{"optim.lr": 0.1}`` (MLflow parameters, recipe comparison)."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out
