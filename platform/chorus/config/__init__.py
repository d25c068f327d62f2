"""Training recipes: YAML validated into dataclasses (DESIGN.md, "Recipes and runs").

``load_recipe(path, overrides)`` is the entry point; overrides are ``key.sub=value`` strings.
"""
from chorus.config.load import (apply_overrides, dump_recipe, flatten, load_recipe, parse_override,
                                recipe_from_dict, save_recipe, to_dict)
from chorus.config.schema import (DataConfig, DiagnosticsConfig, LossConfig, ModelConfig, NeuronConfig,
                                  OptimConfig, Recipe, ScheduleConfig, TrackingConfig, TrainConfig)
from chorus.config.validate import RecipeError

__all__ = [
    "load_recipe", "recipe_from_dict", "apply_overrides", "parse_override", "save_recipe", "dump_recipe",
    "to_dict", "flatten", "RecipeError", "Recipe", "ModelConfig", "NeuronConfig", "LossConfig",
    "DataConfig", "OptimConfig", "ScheduleConfig", "TrainConfig", "TrackingConfig", "DiagnosticsConfig",
]
