"""The search recipe of ``chorus tune`` (schema and loading: :mod:`chorus.config.search`) and the
checks that need the base training recipe: ASHA's rungs against the trials' epochs, the metric
against the names the training loop reports, and a resumed search against the one it resumes."""
from __future__ import annotations

from chorus.config.search import SearchRecipe, SearchRecipeError
from chorus.config.yaml_io import flatten

# keys of a search that decide what its trials are: a resumed search must keep them
TRIAL_DEFINING = ("base", "fixed", "space", "metric", "mode", "scheduler", "num_samples")


def check_scheduler_epochs(spec: SearchRecipe, epochs: int) -> None:
    """ASHA without ``max_t`` stops at the trials' ``train.epochs``: ``grace_period`` must not exceed it."""
    sched = spec.scheduler
    if sched.type == "asha" and sched.max_t is None and sched.grace_period > epochs:
        raise SearchRecipeError(
            f"'scheduler.grace_period' in {spec.source}: must be <= the trials' train.epochs ({epochs}, "
            f"ASHA's max_t when scheduler.max_t is not given), got {sched.grace_period}")


def check_metric(spec: SearchRecipe, recipe) -> None:
    """``metric`` must be a number the loop reports every epoch for the trials' recipe ``recipe``."""
    from chorus.train.metrics import epoch_metric_names

    names, prefixes = epoch_metric_names(recipe)
    if spec.metric not in names and not spec.metric.startswith(prefixes or ("\0",)):
        shown = ", ".join(sorted(names)) + "".join(f", {p}<layer>" for p in prefixes)
        raise SearchRecipeError(f"'metric' in {spec.source}: {spec.metric!r} is not reported by the training "
                                f"loop at every epoch; it reports {shown}")


def check_resume(spec: SearchRecipe, saved: dict) -> None:
    """A resumed search must define its trials as the saved one did (Ray keeps the saved trials):
    refuse, naming every key of ``TRIAL_DEFINING`` whose value differs."""
    now = flatten({k: v for k, v in spec.to_dict().items() if k in TRIAL_DEFINING})
    then = flatten({k: v for k, v in saved.items() if k in TRIAL_DEFINING})
    diff = [f"{k}: {then.get(k)!r} (saved) vs {now.get(k)!r} (now)" for k in sorted(set(now) | set(then))
            if now.get(k) != then.get(k)]
    if diff:
        raise SearchRecipeError(f"--resume in {spec.source}: the search differs from the one it resumes in "
                                + "; ".join(diff) + " -- give the saved values, or start a new search "
                                "(another name= or storage_path=)")
