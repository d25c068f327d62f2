"""The search recipe of ``chorus tune`` (``recipes/search/*.yaml``): the same schema machinery as
training recipes (:mod:`chorus.config.base`), the same YAML reading and ``key.sub=value`` overrides.
Inside ``fixed``, ``space`` and ``scheduler.mutations`` the rest of an override's key is one
training-recipe key: ``fixed.train.epochs=2``, ``space.loss.gamma="grid [0, 1]"``. Errors are
:class:`SearchRecipeError`, naming the key and the file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import PlainSerializer, PlainValidator, WithJsonSchema, field_validator, model_validator

from chorus.config import yaml_io
from chorus.config.base import F, FileSpec, KeyedError, RecipeError, Section

KINDS = ("grid", "choice", "uniform", "loguniform")
FLAT_SECTIONS = (("fixed",), ("space",), ("scheduler", "mutations"))


class SearchRecipeError(RecipeError):
    """An invalid search recipe: ``'key' in FILE: what is wrong``."""

    layout = "'{key}' in {source}: {message}"


@dataclass(frozen=True)
class Dimension:
    """One axis of the space: ``grid``/``choice`` over ``values``, ``uniform``/``loguniform`` in (low, high)."""

    kind: str
    values: tuple


def parse_dimension(value: Any) -> Dimension:
    """``"grid [0, 1]"`` or ``{grid: [0, 1]}`` (likewise choice, uniform, loguniform) → Dimension."""
    if isinstance(value, Dimension):
        return value
    if isinstance(value, str):
        kind, _, rest = value.strip().partition(" ")
        try:
            value = {kind: yaml_io.yaml_load(rest) if rest.strip() else None}
        except Exception:
            value = {kind: None}
    if not isinstance(value, dict) or len(value) != 1:
        raise ValueError(f"a dimension is one of {', '.join(KINDS)} with a list, e.g. 'grid [0, 0.5, 1]' "
                         f"or {{grid: [0, 0.5, 1]}}; got {value!r}")
    (kind, values), = value.items()
    if kind not in KINDS:
        raise ValueError(f"unknown dimension kind {kind!r} (allowed: {', '.join(KINDS)})")
    if not isinstance(values, (list, tuple)):
        raise ValueError(f"{kind} needs a list, got {values!r}")
    if not values:
        raise ValueError(f"empty {kind} (no values to search)")
    if kind in ("uniform", "loguniform"):
        if len(values) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise ValueError(f"{kind} needs [low, high], got {values!r}")
        if not values[0] < values[1]:
            raise ValueError(f"{kind} needs low < high, got {values!r}")
        if kind == "loguniform" and values[0] <= 0:
            raise ValueError(f"loguniform needs low > 0, got {values!r}")
        values = (float(values[0]), float(values[1]))
    return Dimension(kind, tuple(values))


Dim = Annotated[Dimension, PlainValidator(parse_dimension), PlainSerializer(lambda d: {d.kind: list(d.values)}),
                WithJsonSchema({"description": "KIND [values], KIND one of " + ", ".join(KINDS),
                                "anyOf": [{"type": "string"}, {"type": "object"}]})]


class SchedulerSpec(Section):
    """ASHA stops weak trials at rungs grace_period·reduction_factor^k epochs; PBT makes the bottom
    quantile_fraction copy a top trial's checkpoint every perturbation_interval epochs, perturbing the
    mutations keys; FIFO runs every trial to the end."""

    type: Literal["asha", "pbt", "fifo"] = F("asha", "the trial scheduler")
    grace_period: int = F(1, "asha: epochs before a trial can be stopped", ge=1)
    reduction_factor: float = F(2.0, "asha: 1/fraction of trials kept at each rung", gt=1)
    max_t: Optional[int] = F(None, "asha: the last rung; null = the trials' train.epochs", ge=1)
    perturbation_interval: int = F(1, "pbt: epochs between exploits", ge=1)
    mutations: dict[str, Dim] = F({}, "pbt: training keys to perturb (default optim.lr from the space)")
    quantile_fraction: float = F(0.25, "pbt: fraction of trials that exploit / are exploited", gt=0, le=0.5)
    resample_probability: float = F(0.25, "pbt: probability of resampling instead of perturbing", ge=0, le=1)
    synch: bool = F(False, "pbt: wait for every trial at each interval (clones come from one epoch)")

    @model_validator(mode="after")
    def _grace_within_max_t(self):
        if self.max_t is not None and self.grace_period > self.max_t:
            raise KeyedError("grace_period", f"must be <= scheduler.max_t ({self.max_t}), got {self.grace_period}")
        return self


class Resources(Section):
    cpus: float = F(1.0, "CPUs per trial (per worker with workers > 1)", gt=0)
    gpus: float = F(0.0, "GPUs per trial (per worker)", ge=0)
    workers: int = F(1, "> 1: the trial runs on a Ray Train TorchTrainer with this many workers", ge=1)


class TrackingSpec(Section):
    enabled: bool = F(True, "one MLflow parent run, one child run per trial")
    uri: Optional[str] = F(None, "MLflow store; null = the base recipe's")
    experiment: Optional[str] = F(None, "MLflow experiment; null = the base recipe's")


class HeatmapSpec(Section):
    x: str = F("neuron.alpha_init", "training key of the heatmap's columns")
    y: str = F("loss.gamma", "training key of the heatmap's rows")


class SearchRecipe(FileSpec):
    """A validated search recipe; ``base`` and ``storage_path`` are absolute, ``source`` is the file."""

    name: str = F("search", "search name (default: the file name); its folder is storage_path/name")
    description: str = F("", "free text")
    base: str = F(..., "the training recipe, relative to this file")
    fixed: dict[str, Any] = F({}, "training-recipe overrides for every trial (dotted keys)")
    space: dict[str, Dim] = F(..., "dotted training key -> grid|choice|uniform|loguniform [values]")
    metric: str = F("val/acc", "what the trials are ranked by: a metric the loop reports every epoch")
    mode: Literal["max", "min"] = F("max", "maximise or minimise the metric")
    scheduler: SchedulerSpec = F(default_factory=SchedulerSpec, doc="trial scheduler")
    num_samples: int = F(1, "samples of the space (times the grid)", ge=1)
    max_concurrent: int = F(1, "trials at a time", ge=1)
    resources: Resources = F(default_factory=Resources, doc="one trial's resources")
    max_failures: int = F(0, "retries of a failed trial from its last checkpoint", ge=0)
    checkpoint_keep: int = F(2, "Ray checkpoints kept per trial (pbt keeps at least 4)", ge=1)
    storage_path: str = F("runs/tune", "where searches are kept (relative: to the working folder)")
    tracking: TrackingSpec = F(default_factory=TrackingSpec, doc="MLflow of the search")
    heatmap: HeatmapSpec = F(default_factory=HeatmapSpec, doc="the heatmap's axes")

    @field_validator("space", mode="before")
    @classmethod
    def _not_empty(cls, space):
        if not space:
            raise ValueError("empty search space (give at least one key to search)")
        return space


def parse_search(raw: dict, where: str, base_dir: str = ".") -> SearchRecipe:
    """Validate a raw mapping into a :class:`SearchRecipe` (without looking at the base recipe)."""
    spec = SearchRecipe.parse({"name": Path(where).stem, **raw}, SearchRecipeError, where)
    sched = spec.scheduler
    if sched.type == "pbt" and not sched.mutations:
        if "optim.lr" not in spec.space:
            raise SearchRecipeError.at("scheduler.mutations", "pbt needs the keys to perturb (e.g. optim.lr: "
                                       "loguniform [0.001, 0.1]) or optim.lr in the space", where)
        sched.mutations = {"optim.lr": spec.space["optim.lr"]}
    if sched.type == "pbt" and spec.resources.workers > 1:      # Ray Train trials cannot be cloned by PBT
        raise SearchRecipeError(
            f"'scheduler.type' pbt with 'resources.workers' {spec.resources.workers} in {where}: PBT cannot "
            f"clone a distributed (Ray Train) trial's checkpoint; use resources.workers: 1 or scheduler asha/fifo")
    spec.base = os.path.abspath(os.path.join(base_dir, os.path.expanduser(spec.base)))
    spec.storage_path = os.path.abspath(os.path.expanduser(spec.storage_path))
    return spec


def load_search(path: str | os.PathLike, overrides: list[str] | None = None) -> SearchRecipe:
    """Read, override and validate a search recipe file. ``base`` is resolved relative to the file;
    a relative ``storage_path`` relative to the working folder."""
    path = str(path)
    raw = yaml_io.read_yaml(path, SearchRecipeError, "search recipe", "tune")
    raw = yaml_io.apply_overrides(raw, overrides or [], f"command line for {path}", SearchRecipeError, FLAT_SECTIONS)
    return parse_search(raw, path, base_dir=os.path.dirname(os.path.abspath(path)))
