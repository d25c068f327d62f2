"""Translate a search space (:class:`~chorus.config.search.Dimension` per dotted recipe key) to Ray Tune,
and a trial's sampled config back to training-recipe overrides.

Ray Tune's ``param_space`` is kept flat: its keys are the dotted training-recipe keys themselves
(``{"loss.gamma": grid_search([...]), ...}``), so a trial's ``config`` maps straight onto
``key.sub=value`` overrides, the one override mechanism of training recipes.
"""
from __future__ import annotations

import json
import math
from typing import Any

from chorus.config.search import Dimension, SearchRecipe


def to_domain(dim: Dimension, *, for_mutation: bool = False) -> Any:
    """One dimension as a Ray Tune search domain. PBT mutations take grid values as a plain list."""
    from ray import tune

    if dim.kind == "grid":
        return list(dim.values) if for_mutation else tune.grid_search(list(dim.values))
    if dim.kind == "choice":
        return list(dim.values) if for_mutation else tune.choice(list(dim.values))
    if dim.kind == "uniform":
        return tune.uniform(*dim.values)
    if dim.kind == "loguniform":
        return tune.loguniform(*dim.values)
    raise ValueError(f"unknown dimension kind {dim.kind!r}")


def param_space(spec: SearchRecipe) -> dict:
    """Ray Tune ``param_space``: every space key, plus PBT mutation keys missing from the space."""
    space = {key: to_domain(dim) for key, dim in spec.space.items()}
    if spec.scheduler.type == "pbt":
        for key, dim in spec.scheduler.mutations.items():
            if key not in space:
                space[key] = to_domain(dim if dim.kind not in ("grid",) else Dimension("choice", dim.values))
    return space


def mutations(spec: SearchRecipe) -> dict:
    """PBT ``hyperparam_mutations``."""
    return {key: to_domain(dim, for_mutation=True) for key, dim in spec.scheduler.mutations.items()}


def num_trials(spec: SearchRecipe) -> int:
    """How many trials the search runs: the product of grid sizes times ``num_samples``."""
    grid = [len(d.values) for d in spec.space.values() if d.kind == "grid"]
    return spec.num_samples * math.prod(grid)


def format_value(value: Any) -> str:
    """A value as the right-hand side of ``key=value`` that YAML reads back as the same value.

    JSON is valid YAML except for floats in exponent form: YAML 1.1 reads ``1e-05`` as a string, so
    those are written ``1.0e-05``; non-finite floats as ``.inf``/``.nan``."""
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)
        mantissa, e, exponent = text.partition("e")
        if e and "." not in mantissa:
            text = f"{mantissa}.0e{exponent}"
        return text
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return json.dumps(value)


def to_overrides(values: dict) -> list[str]:
    """``{"loss.gamma": 0.5}`` → ``["loss.gamma=0.5"]``."""
    return [f"{key}={format_value(value)}" for key, value in values.items()]


def search_keys(spec: SearchRecipe) -> list[str]:
    """The searched keys: the space's, then PBT mutation keys not in the space."""
    return list(spec.space) + [k for k in spec.scheduler.mutations if k not in spec.space]


def trial_values(spec: SearchRecipe, config: dict) -> dict:
    """The searched keys of a trial's config, in the order of :func:`search_keys`."""
    return trial_values_from_keys(search_keys(spec), config)


def trial_values_from_keys(keys: list[str], config: dict) -> dict:
    """The searched keys (``keys``, in order) of a trial's config."""
    return {key: config[key] for key in keys if key in config}
