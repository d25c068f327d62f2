"""The search recipe read by ``chorus tune``: its schema, loading, overrides and validation.

A search recipe is plain YAML data. It names a base training recipe, the training-recipe keys held
fixed for every trial, the search space over any dotted training-recipe key, the metric and mode, the
scheduler, the number of samples, the concurrency and the resources of one trial. Example::

    name: quickstart_gamma_alpha
    base: ../quickstart.yaml              # relative to this file
    fixed: {train.epochs: 3}              # training-recipe overrides for every trial
    space:
      loss.gamma: grid [0, 0.5, 1]        # or {grid: [0, 0.5, 1]}
      neuron.alpha_init: grid [0.2, 0.5, 0.8]
      optim.lr: loguniform [0.001, 0.1]
    metric: val/acc
    mode: max
    scheduler: {type: asha, grace_period: 1, reduction_factor: 2}
    max_concurrent: 2
    resources: {cpus: 1, gpus: 0, workers: 1}

The command line overrides it with the same ``key.sub=value`` mechanism as training recipes (values
are YAML scalars). Inside ``fixed``, ``space`` and ``scheduler.mutations`` the rest of the key after
the section name is one training-recipe key: ``fixed.train.epochs=2``, ``space.loss.gamma="grid [0, 1]"``.
Every error names the offending key and the file.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

DIMENSION_KINDS = ("grid", "choice", "uniform", "loguniform")
SCHEDULERS = ("asha", "pbt", "fifo")
# Sections whose keys are whole dotted training-recipe keys (not nested search-recipe keys).
FLAT_SECTIONS = (("fixed",), ("space",), ("scheduler", "mutations"))


class SearchRecipeError(ValueError):
    """An invalid search recipe; the message names the key and the file."""


@dataclass(frozen=True)
class Dimension:
    """One axis of the search space: ``grid``/``choice`` over ``values``, or ``uniform``/``loguniform``
    between ``values = (low, high)``."""

    kind: str
    values: tuple


@dataclass
class SchedulerSpec:
    """Trial scheduler. ``asha``: stop weak trials at rungs ``grace_period·reduction_factor^k`` epochs
    (``max_t`` defaults to the trials' ``train.epochs``). ``pbt``: every ``perturbation_interval``
    epochs the bottom ``quantile_fraction`` of trials copy a top trial's checkpoint and perturb the
    ``mutations`` keys (default: ``optim.lr``); ``synch`` waits for every trial to reach the interval
    before exploiting (clones then come from the same epoch). ``fifo``: run every trial to the end."""

    type: str = "asha"
    grace_period: int = 1
    reduction_factor: float = 2.0
    max_t: Optional[int] = None
    perturbation_interval: int = 1
    mutations: dict = field(default_factory=dict)
    quantile_fraction: float = 0.25
    resample_probability: float = 0.25
    synch: bool = False


@dataclass
class Resources:
    """Resources of one trial. ``workers > 1`` runs the trial as a Ray Train ``TorchTrainer`` with that
    many workers, each holding ``cpus`` CPUs and ``gpus`` GPUs."""

    cpus: float = 1.0
    gpus: float = 0.0
    workers: int = 1


@dataclass
class TrackingSpec:
    """MLflow of the search: one parent run; each trial's run is nested under it. ``uri`` and
    ``experiment`` default to the base recipe's ``tracking`` section."""

    enabled: bool = True
    uri: Optional[str] = None
    experiment: Optional[str] = None


@dataclass
class HeatmapSpec:
    """The two training-recipe keys of the heatmap of the metric (columns ``x``, rows ``y``)."""

    x: str = "neuron.alpha_init"
    y: str = "loss.gamma"


@dataclass
class SearchRecipe:
    """A validated search recipe. ``base`` and ``storage_path`` are absolute paths."""

    name: str
    base: str
    space: dict
    fixed: dict = field(default_factory=dict)
    metric: str = "val/acc"
    mode: str = "max"
    scheduler: SchedulerSpec = field(default_factory=SchedulerSpec)
    num_samples: int = 1
    max_concurrent: int = 1
    resources: Resources = field(default_factory=Resources)
    max_failures: int = 0
    checkpoint_keep: int = 2
    storage_path: str = "runs/tune"
    tracking: TrackingSpec = field(default_factory=TrackingSpec)
    heatmap: HeatmapSpec = field(default_factory=HeatmapSpec)
    description: str = ""
    source: Optional[str] = None

    def to_dict(self) -> dict:
        """Plain data (dimensions as ``{kind: values}``), e.g. for saving or logging."""
        out = dataclasses.asdict(self)
        out["space"] = {k: {d.kind: list(d.values)} for k, d in self.space.items()}
        out["scheduler"]["mutations"] = {
            k: {d.kind: list(d.values)} for k, d in self.scheduler.mutations.items()
        }
        return out


# --------------------------------------------------------------------------------------------------
# overrides

def parse_override(text: str, where: str) -> tuple[str, Any]:
    """``"key.sub=value"`` → ``("key.sub", value)`` with the value parsed as a YAML scalar."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise SearchRecipeError(f"override {text!r} ({where}) is not of the form key.sub=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise SearchRecipeError(f"override {key!r} ({where}): cannot parse {raw!r}: {exc}") from None
    return key.strip(), value


def apply_overrides(raw: dict, overrides: list[str], where: str) -> dict:
    """Apply ``key.sub=value`` strings to the raw search-recipe mapping (in place; returned)."""
    for text in overrides or []:
        key, value = parse_override(text, where)
        parts = key.split(".")
        node = raw
        i = 0
        while i < len(parts) - 1:
            prefix = tuple(parts[: i + 1])
            child = node.get(parts[i])
            if child is None:
                child = node[parts[i]] = {}
            if not isinstance(child, dict):
                raise SearchRecipeError(f"override {key!r} ({where}): {'.'.join(prefix)!r} is not a section")
            node = child
            i += 1
            if prefix in FLAT_SECTIONS:
                break
        node[".".join(parts[i:])] = value
    return raw


# --------------------------------------------------------------------------------------------------
# parsing

def parse_dimension(value: Any, key: str, where: str) -> Dimension:
    """``"grid [0, 1]"`` or ``{grid: [0, 1]}`` (likewise choice, uniform, loguniform) → Dimension."""
    if isinstance(value, str):
        kind, _, rest = value.strip().partition(" ")
        try:
            values = yaml.safe_load(rest) if rest.strip() else None
        except yaml.YAMLError:
            values = None
        value = {kind: values}
    if not isinstance(value, dict) or len(value) != 1:
        raise SearchRecipeError(
            f"{key!r} in {where}: a dimension is one of {', '.join(DIMENSION_KINDS)} with a list, "
            f"e.g. 'grid [0, 0.5, 1]' or {{grid: [0, 0.5, 1]}}; got {value!r}")
    (kind, values), = value.items()
    if isinstance(values, (list, tuple)):
        values = [_number_or_same(v) for v in values]
    if kind not in DIMENSION_KINDS:
        raise SearchRecipeError(
            f"{key!r} in {where}: unknown dimension kind {kind!r} (allowed: {', '.join(DIMENSION_KINDS)})")
    if not isinstance(values, (list, tuple)):
        raise SearchRecipeError(f"{key!r} in {where}: {kind} needs a list, got {values!r}")
    if len(values) == 0:
        raise SearchRecipeError(f"{key!r} in {where}: empty {kind} (no values to search)")
    if kind in ("uniform", "loguniform"):
        if len(values) != 2 or not all(_is_number(v) for v in values):
            raise SearchRecipeError(f"{key!r} in {where}: {kind} needs [low, high], got {values!r}")
        low, high = float(values[0]), float(values[1])
        if not low < high:
            raise SearchRecipeError(f"{key!r} in {where}: {kind} needs low < high, got {values!r}")
        if kind == "loguniform" and low <= 0:
            raise SearchRecipeError(f"{key!r} in {where}: loguniform needs low > 0, got {values!r}")
        values = (low, high)
    return Dimension(kind, tuple(values))


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _number_or_same(v: Any) -> Any:
    """``"1e-5"`` (a string to YAML 1.1) → ``1e-05``; anything else unchanged."""
    return float(v) if isinstance(v, str) and _FLOAT.fullmatch(v.strip()) else v


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_type(value: Any, annotation: str, key: str, where: str) -> Any:
    optional = annotation.startswith("Optional[")
    base = annotation[len("Optional["):-1] if optional else annotation
    if value is None and optional:
        return None
    if base == "float" and _is_number(value):
        return float(value)
    if base == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if base == "str" and isinstance(value, str):
        return value
    if base == "bool" and isinstance(value, bool):
        return value
    if base == "dict" and isinstance(value, dict):
        return value
    raise SearchRecipeError(f"{key!r} in {where}: expected {annotation}, got {value!r}")


def _build(cls, raw: Any, prefix: str, where: str):
    """Build dataclass ``cls`` from mapping ``raw``; unknown keys and wrong types name the key."""
    if not isinstance(raw, dict):
        raise SearchRecipeError(f"{prefix.rstrip('.') or 'the search recipe'!r} in {where}: expected a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise SearchRecipeError(
            f"unknown key {prefix + str(unknown[0])!r} in {where} (allowed here: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, value in raw.items():
        f = fields[name]
        key = prefix + name
        annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        if annotation in _NESTED:
            kwargs[name] = _build(_NESTED[annotation], value if value is not None else {}, key + ".", where)
        else:
            kwargs[name] = _check_type(value, annotation, key, where)
    missing = [n for n, f in fields.items()
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
               and n not in kwargs]
    if missing:
        raise SearchRecipeError(f"missing key {prefix + missing[0]!r} in {where}")
    return cls(**kwargs)


_NESTED = {"SchedulerSpec": SchedulerSpec, "Resources": Resources, "TrackingSpec": TrackingSpec,
           "HeatmapSpec": HeatmapSpec}


def _check_scheduler(sched: SchedulerSpec, where: str) -> None:
    """Range checks of the scheduler's numbers, so a bad value fails here, naming the key and the file,
    not as a bare assertion inside Ray after the search folder and its MLflow run exist."""
    def bad(key: str, rule: str, value) -> SearchRecipeError:
        return SearchRecipeError(f"'scheduler.{key}' in {where}: must be {rule}, got {value!r}")

    if sched.type == "asha":
        if not sched.reduction_factor > 1:
            raise bad("reduction_factor", "> 1", sched.reduction_factor)
        if sched.max_t is not None:
            if sched.max_t < 1:
                raise bad("max_t", "at least 1", sched.max_t)
            if sched.grace_period > sched.max_t:
                raise bad("grace_period", f"<= scheduler.max_t ({sched.max_t})", sched.grace_period)
    if sched.type == "pbt":
        if not 0 < sched.quantile_fraction <= 0.5:
            raise bad("quantile_fraction", "in (0, 0.5]", sched.quantile_fraction)
        if not 0 <= sched.resample_probability <= 1:
            raise bad("resample_probability", "in [0, 1]", sched.resample_probability)


def check_scheduler_epochs(spec: SearchRecipe, epochs: int) -> None:
    """ASHA without ``max_t`` stops at the trials' ``train.epochs``: ``grace_period`` must not exceed it."""
    sched = spec.scheduler
    if sched.type == "asha" and sched.max_t is None and sched.grace_period > epochs:
        raise SearchRecipeError(
            f"'scheduler.grace_period' in {spec.source}: must be <= the trials' train.epochs ({epochs}, "
            f"ASHA's max_t when scheduler.max_t is not given), got {sched.grace_period}")


def parse_search(raw: dict, where: str, base_dir: str = ".") -> SearchRecipe:
    """Validate a raw mapping into a :class:`SearchRecipe` (without looking at the base recipe)."""
    if not isinstance(raw, dict):
        raise SearchRecipeError(f"{where}: a search recipe is a mapping, got {type(raw).__name__}")
    raw = dict(raw)
    raw.setdefault("name", Path(where).stem)
    if "space" in raw and not raw["space"]:
        raise SearchRecipeError(f"'space' in {where}: empty search space (give at least one key to search)")
    spec = _build(SearchRecipe, raw, "", where)
    if not spec.space:
        raise SearchRecipeError(f"'space' in {where}: empty search space (give at least one key to search)")
    spec.space = {str(k): parse_dimension(v, f"space.{k}", where) for k, v in spec.space.items()}
    spec.fixed = {str(k): v for k, v in spec.fixed.items()}
    sched = spec.scheduler
    if sched.type not in SCHEDULERS:
        raise SearchRecipeError(f"'scheduler.type' in {where}: {sched.type!r} is not one of {', '.join(SCHEDULERS)}")
    sched.mutations = {str(k): parse_dimension(v, f"scheduler.mutations.{k}", where)
                       for k, v in sched.mutations.items()}
    if sched.type == "pbt" and not sched.mutations:
        lr = spec.space.get("optim.lr")
        if lr is None:
            raise SearchRecipeError(
                f"'scheduler.mutations' in {where}: pbt needs the keys to perturb (e.g. optim.lr: "
                f"loguniform [0.001, 0.1]) or optim.lr in the space")
        sched.mutations = {"optim.lr": lr}
    if spec.mode not in ("max", "min"):
        raise SearchRecipeError(f"'mode' in {where}: expected max or min, got {spec.mode!r}")
    for name, value in (("num_samples", spec.num_samples), ("max_concurrent", spec.max_concurrent),
                        ("resources.workers", spec.resources.workers),
                        ("scheduler.grace_period", sched.grace_period),
                        ("scheduler.perturbation_interval", sched.perturbation_interval),
                        ("checkpoint_keep", spec.checkpoint_keep)):
        if value < 1:
            raise SearchRecipeError(f"{name!r} in {where}: must be at least 1, got {value}")
    _check_scheduler(sched, where)
    if sched.type == "pbt" and spec.resources.workers > 1:
        # Ray Train V2 trials (TorchTrainer) cannot be cloned by PBT's exploit step
        raise SearchRecipeError(
            f"'scheduler.type' pbt with 'resources.workers' {spec.resources.workers} in {where}: PBT cannot "
            f"clone a distributed (Ray Train) trial's checkpoint; use resources.workers: 1 or scheduler asha/fifo")
    if spec.max_failures < 0:
        raise SearchRecipeError(f"'max_failures' in {where}: must be >= 0, got {spec.max_failures}")
    spec.base = os.path.abspath(os.path.join(base_dir, os.path.expanduser(spec.base)))
    spec.storage_path = os.path.abspath(os.path.expanduser(spec.storage_path))
    spec.source = where
    return spec


def load_search(path: str | os.PathLike, overrides: list[str] | None = None) -> SearchRecipe:
    """Read, override and validate a search recipe file. ``base`` is resolved relative to the file;
    a relative ``storage_path`` relative to the working directory."""
    path = str(path)
    try:
        with open(path) as fh:
            raw = yaml.safe_load(fh) or {}
    except FileNotFoundError:
        raise SearchRecipeError(f"search recipe {path} not found") from None
    except yaml.YAMLError as exc:
        raise SearchRecipeError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise SearchRecipeError(f"{path}: a search recipe is a mapping, got {type(raw).__name__}")
    apply_overrides(raw, overrides or [], f"command line for {path}")
    return parse_search(raw, path, base_dir=os.path.dirname(os.path.abspath(path)))
