"""Training and search recipes: YAML validated by pydantic models (docs/method.md, "Recipes and runs").

``load_recipe(path, overrides)`` and ``load_search(path, overrides)`` are the entry points; overrides
are ``key.sub=value`` strings. ``describe(Recipe)`` is the text of ``chorus train --help-recipe``,
``json_schema(Recipe)`` the JSON Schema for editors.
"""
from chorus.config.base import RecipeError
from chorus.config.describe import describe, json_schema
from chorus.config.load import dump_recipe, load_recipe, recipe_from_dict, save_recipe, to_dict
from chorus.config.schema import (DataConfig, DiagnosticsConfig, LossConfig, ModelConfig, NeuronConfig,
                                  OptimConfig, Recipe, ScheduleConfig, TrackingConfig, TrainConfig)
from chorus.config.yaml_io import apply_overrides, flatten, parse_override

__all__ = [
    "load_recipe", "recipe_from_dict", "apply_overrides", "parse_override", "save_recipe", "dump_recipe",
    "to_dict", "flatten", "RecipeError", "Recipe", "ModelConfig", "NeuronConfig", "LossConfig",
    "DataConfig", "OptimConfig", "ScheduleConfig", "TrainConfig", "TrackingConfig", "DiagnosticsConfig",
    "describe", "json_schema",
]
