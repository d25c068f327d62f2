"""Load, override, save and compare training recipes (docs/method.md, "Recipes and runs").

``load_recipe(path, overrides)`` is the entry point: the YAML file, then ``key.sub=value`` overrides
(``train.epochs=3``, ``neuron.mps=false``, ``optim.betas=[0.9,0.99]``, ``neuron.v_reset=null``), then
validation by :class:`~chorus.config.schema.Recipe`. Errors are :class:`RecipeError`.
"""
from __future__ import annotations

import os
from typing import Iterable

import yaml
from chorus.config import paths
from chorus.config.base import RecipeError
from chorus.config.schema import Recipe
from chorus.config.yaml_io import apply_overrides, read_yaml


def recipe_from_dict(data: dict, overrides: Iterable[str] = (), source: str | None = None) -> Recipe:
    """Validate a mapping (plus overrides) into a :class:`Recipe`."""
    merged = apply_overrides(data, overrides, source)
    if source and "name" not in merged:
        merged["name"] = os.path.splitext(os.path.basename(source))[0]
    merged.setdefault("data", {})
    recipe = Recipe.parse(merged, RecipeError, source)
    # relative paths written in a recipe mean the same folder from any working directory (config/paths.py)
    recipe.data.shards = paths.resolve(recipe.data.shards, source, os.path.isdir)
    recipe.train.deepspeed = paths.resolve(recipe.train.deepspeed, source, os.path.isfile)
    return recipe


def load_recipe(path: str, overrides: Iterable[str] = ()) -> Recipe:
    """Read the YAML recipe at ``path``, apply ``key.sub=value`` overrides and validate it."""
    return recipe_from_dict(read_yaml(path), overrides, source=path)


def to_dict(recipe: Recipe) -> dict:
    """The resolved recipe as plain data (what is saved with every run)."""
    return recipe.to_dict()


def dump_recipe(recipe: Recipe) -> str:
    return yaml.safe_dump(to_dict(recipe), sort_keys=False)


def save_recipe(recipe: Recipe, path: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(dump_recipe(recipe))
    os.replace(tmp, path)
