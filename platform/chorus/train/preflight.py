"""Everything a run can be refused for, checked together before anything is written: the recipe (done
by its schema when loaded), the shards, the model built for them, and the data against the batch size
and accumulation window (issue 18, item 9). The result is the run's :class:`Plan`."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from chorus.config import Recipe, RecipeError
from chorus.train import components


@dataclass
class Plan:
    """What the loop trains on and how long: the shards' manifest, the (unprepared) model, and the
    step counts (the remainder of an epoch's batches that fills no optimizer step is dropped)."""

    manifest: dict
    model: nn.Module
    batches: int              # training batches per process and epoch
    steps_per_epoch: int
    used_batches: int         # steps_per_epoch x train.grad_accum
    total_steps: int


def make_plan(recipe: Recipe, manifest: dict, rank: int, world: int) -> Plan:
    """Build the model for the shards and count the steps; every refusal is a :class:`RecipeError`."""
    from chorus.data import DataError

    t, d = recipe.train, recipe.data
    components.check_model_fits_data(recipe, manifest)
    model = components.build_model(recipe, manifest)
    try:
        batches = len(components.make_loader(recipe, "train", train=True, epoch=0, rank=rank, world_size=world,
                                                manifest=manifest))
    except DataError as e:
        if "cannot fill" not in str(e):
            raise
        raise RecipeError.at("data.batch_size", f"{d.batch_size} is too large: {e} (data.shards {d.shards!r})",
                             recipe.source) from None
    steps = batches // t.grad_accum
    if steps == 0:
        where = f" in {recipe.source}" if recipe.source else ""
        raise RecipeError(f"data.batch_size={d.batch_size} x train.grad_accum={t.grad_accum} x {world} processes "
                          f"leaves no full step in the {batches} training batches of {d.shards}{where}")
    total = steps * t.epochs if t.max_steps is None else min(t.max_steps, steps * t.epochs)
    return Plan(manifest, model, batches, steps, steps * t.grad_accum, total)
