"""Load, override, save and flatten recipes (DESIGN.md, "Recipes and runs").

The one override mechanism: ``key.sub=value`` strings, the value parsed as a YAML scalar
(``train.epochs=3``, ``neuron.mps=false``, ``optim.betas=[0.9,0.99]``, ``neuron.v_reset=null``).
They apply to the YAML mapping before validation, so they are checked exactly like the file.
"""
from __future__ import annotations

import copy
import dataclasses
import os
from typing import Any, Iterable

import yaml

from chorus.config.schema import Recipe
from chorus.config.validate import RecipeError, build, check_ranges


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=0.05"`` → ``(["optim", "lr"], 0.05)``."""
    if "=" not in text:
        raise RecipeError(f"override {text!r}: expected key.sub=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise RecipeError(f"override {text!r}: the key {key!r} is not a dotted name")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise RecipeError(f"override {text!r}: the value is not valid YAML ({e})") from None
    return key.split("."), value


def apply_overrides(data: dict, overrides: Iterable[str], source: str | None = None) -> dict:
    """Return a copy of ``data`` with every ``key.sub=value`` applied (new keys are created here and
    rejected by validation if the schema does not know them)."""
    out = copy.deepcopy(data)
    for text in overrides or ():
        parts, value = parse_override(text)
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(parts[: i + 1])
                raise RecipeError(f"override {text!r}: '{where}' is a value, not a section"
                                  + (f" in {source}" if source else ""))
            node = child
        node[parts[-1]] = value
    return out


def read_yaml(path: str) -> dict:
    if not os.path.isfile(path):
        raise RecipeError(f"recipe file not found: {path}")
    with open(path) as f:
        try:
            data = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise RecipeError(f"{path}: not valid YAML ({e})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping of sections, got {type(data).__name__}")
    return data


def recipe_from_dict(data: dict, overrides: Iterable[str] = (), source: str | None = None) -> Recipe:
    """Validate a mapping (plus overrides) into a :class:`Recipe`."""
    merged = apply_overrides(data, overrides, source)
    recipe = build(Recipe, merged, "", source)
    check_ranges(recipe, source)
    recipe.source = source
    if "name" not in merged and source:
        recipe.name = os.path.splitext(os.path.basename(source))[0]
    return recipe


def load_recipe(path: str, overrides: Iterable[str] = ()) -> Recipe:
    """Read the YAML recipe at ``path``, apply ``key.sub=value`` overrides and validate it."""
    return recipe_from_dict(read_yaml(path), overrides, source=path)


def to_dict(recipe: Recipe) -> dict:
    """The resolved recipe as plain data (what is saved with every run)."""
    d = dataclasses.asdict(recipe)
    d.pop("source", None)
    return d


def dump_recipe(recipe: Recipe) -> str:
    return yaml.safe_dump(to_dict(recipe), sort_keys=False)


def save_recipe(recipe: Recipe, path: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(dump_recipe(recipe))
    os.replace(tmp, path)


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 0.1}}`` → ``{"optim.lr": 0.1}`` (MLflow parameters)."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out
