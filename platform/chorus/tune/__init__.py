"""Hyperparameter search with Ray Tune over the one training loop (``chorus tune``).

``load_search(path, overrides)`` reads and validates a search recipe (:mod:`chorus.config.search`);
``run_search(spec, address=None, resume=False)`` runs it (:mod:`chorus.tune.runner`): one Ray Tune
trial per configuration, each a call of ``chorus.train.run``, nested as child runs under one MLflow
parent run, then the results table, the best trial's recipe and the γ × α_init heatmap.
Ray and MLflow are imported only when a search runs.
"""
from chorus.config.search import Dimension, SearchRecipe, SearchRecipeError, load_search, parse_search

__all__ = ["load_search", "parse_search", "run_search", "SearchRecipe", "SearchRecipeError", "Dimension",
           "SearchOutcome"]


def __getattr__(name):
    if name in ("run_search", "SearchOutcome"):
        from chorus.tune import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'chorus.tune' has no attribute {name!r}")
