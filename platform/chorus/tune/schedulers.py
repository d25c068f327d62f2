"""Build the Ray Tune trial scheduler named by a search recipe (ASHA, PBT or FIFO).

Time is counted in reported epochs (``training_iteration``: a trial reports once per epoch).
"""
from __future__ import annotations

from chorus.config.search import SearchRecipe
from chorus.tune.space import mutations


def make_scheduler(spec: SearchRecipe, epochs: int):
    """The scheduler for ``spec``; ``epochs`` is the trials' ``train.epochs`` (ASHA's default
    ``max_t``). Metric and mode are given to ``TuneConfig``, not here."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining

    sched = spec.scheduler
    if sched.type == "asha":
        return ASHAScheduler(
            time_attr="training_iteration",
            max_t=int(sched.max_t or epochs),
            grace_period=int(sched.grace_period),
            reduction_factor=float(sched.reduction_factor),
        )
    if sched.type == "pbt":
        return PopulationBasedTraining(
            time_attr="training_iteration",
            perturbation_interval=int(sched.perturbation_interval),
            hyperparam_mutations=mutations(spec),
            quantile_fraction=float(sched.quantile_fraction),
            resample_probability=float(sched.resample_probability),
            synch=bool(sched.synch),
        )
    return FIFOScheduler()
