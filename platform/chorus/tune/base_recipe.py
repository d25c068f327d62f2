"""The bridge between a search recipe and its base training recipe (``chorus.config``).

Validates, before any trial starts, that every ``fixed`` key and every searched key is a key of the
training recipe and that each listed value (grid and choice values, range bounds) passes the training
recipe's own validation; and writes the best trial's configuration as a ready training recipe.
"""
from __future__ import annotations

import os
from typing import Any

from chorus.config.search import SearchRecipe, SearchRecipeError
from chorus.tune.space import to_overrides
from chorus.tune.spec import check_metric


def _load(spec: SearchRecipe, overrides: list[str], what: str):
    from chorus.config import RecipeError, load_recipe

    try:
        return load_recipe(spec.base, overrides)
    except RecipeError as exc:
        raise SearchRecipeError(f"{what} in {spec.source}: {exc}") from None


def fixed_overrides(spec: SearchRecipe) -> list[str]:
    """The search recipe's ``fixed`` section as ``key.sub=value`` overrides."""
    return to_overrides(spec.fixed)


def check_against_base(spec: SearchRecipe):
    """Validate ``fixed`` and every value of every searched key against the base recipe; returns the
    base recipe with ``fixed`` applied. Errors name the key and the search recipe file."""
    if not os.path.isfile(spec.base):
        raise SearchRecipeError(f"'base' in {spec.source}: training recipe {spec.base} not found")
    fixed = fixed_overrides(spec)
    recipe = _load(spec, fixed, "'fixed'")
    dims = dict(spec.space)
    for key, dim in spec.scheduler.mutations.items():
        dims.setdefault(key, dim)
    for key, dim in dims.items():
        section = "space" if key in spec.space else "scheduler.mutations"
        for value in dim.values:
            _load(spec, fixed + to_overrides({key: value}), f"{section}.{key} = {value!r}")
    for axis in ("x", "y"):
        key = getattr(spec.heatmap, axis)
        _load(spec, fixed + [f"{key}={_current(recipe, key)}"], f"heatmap.{axis} ({key!r})")
    check_metric(spec, recipe)
    return recipe


def _current(recipe, key: str) -> Any:
    """The value of dotted ``key`` in ``recipe`` as override text (raises for an unknown key)."""
    import json

    node: Any = recipe
    for part in key.split("."):
        node = node[part] if isinstance(node, dict) else getattr(node, part, None)
    return json.dumps(node)


def write_best_recipe(spec: SearchRecipe, values: dict, path: str, note: str = "") -> str:
    """Write the base recipe with ``fixed`` and the best trial's ``values`` as a ready recipe."""
    from chorus.config import save_recipe

    recipe = _load(spec, fixed_overrides(spec) + to_overrides(values), "the best trial")
    recipe.name = f"{spec.name}-best"
    recipe.description = note or f"best trial of the search {spec.name}"
    recipe.tracking.parent_run_id = None
    recipe.tracking.run_name = None
    recipe.train.resume = "never"
    recipe.train.out_dir = None
    save_recipe(recipe, path)
    return path
