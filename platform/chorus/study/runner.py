"""Run a study (``chorus study``): every arm × seed one training run of the one loop
(:func:`chorus.train.run`), each a Ray Tune trial (:mod:`chorus.study.pairs`), nested under one MLflow
parent run, then the tables (:mod:`chorus.study.tables`).

Layout: ``{out_dir}/{name}/`` holds ``study.yaml`` (the resolved study), ``study_state.json`` (the
parent MLflow run), ``study.json``, ``study.md``, ``{arm}/seed_{seed}/`` (each run's folder) and ``ray/``
(Ray's records of each call's trials). Everything that can be refused (the study file, every arm ×
seed's recipe, the shards, a study folder in use) is refused before anything is written. ``resume=True`` continues a study: finished pairs (their run folder
holds ``summary.json`` and ``per_timestep.json``) are skipped, after checking that they were trained with
the recipe the study file gives them now; an interrupted pair resumes from its latest checkpoint.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import Optional

from chorus.config import Recipe, RecipeError, flatten, load_recipe, to_dict
from chorus.config.study import StudyError, StudySpec
from chorus.config.yaml_io import yaml_load
from chorus.study import tables as agg
from chorus.tune.space import format_value, to_overrides

STATE = "study_state.json"
ARM_TAG, SEED_TAG, STUDY_TAG = "chorus.study.arm", "chorus.study.seed", "chorus.study"
# what a study sets per run, not part of what a run is trained with
BOOKKEEPING = ("name", "description", "train.out_dir", "train.resume", "train.progress", "tracking.")


@dataclass
class Pair:
    arm: str
    seed: int
    run_dir: str
    overrides: list[str]
    recipe: Recipe

    @property
    def finished(self) -> bool:
        return all(os.path.isfile(os.path.join(self.run_dir, n)) for n in ("summary.json", "per_timestep.json"))


@dataclass
class StudyOutcome:
    folder: str
    study: dict
    table: str
    parent_run_id: Optional[str]
    trained: list = field(default_factory=list)      # (arm, seed) trained by this call
    skipped: list = field(default_factory=list)      # (arm, seed) finished before
    failed: list = field(default_factory=list)       # (arm, seed, message)


def pair_overrides(spec: StudySpec, arm: str, seed: int, run_dir: str) -> list[str]:
    """The training-recipe overrides of one run: ``fixed``, the arm's, the seed, the run folder and its
    MLflow bookkeeping (the parent run id is added when the run starts)."""
    tc = spec.tracking
    out = to_overrides(spec.fixed) + to_overrides(spec.arms[arm])
    out += [f"train.seed={seed}", f"train.out_dir={json.dumps(run_dir)}", "train.resume=auto", "train.progress=false",
            f"tracking.run_name={json.dumps(f'{arm}/seed_{seed}')}",
            f"tracking.tags={format_value({STUDY_TAG: spec.name, ARM_TAG: arm, SEED_TAG: str(seed)})}"]
    if not tc.enabled:
        out.append("tracking.enabled=false")
    if tc.uri:
        out.append(f"tracking.uri={json.dumps(tc.uri)}")
    if tc.experiment:
        out.append(f"tracking.experiment={json.dumps(tc.experiment)}")
    return out


def plan(spec: StudySpec) -> list[Pair]:
    """Every arm × seed with its validated recipe; a bad arm is a :class:`StudyError` naming it."""
    if not os.path.isfile(spec.recipe):
        raise StudyError.at("recipe", f"training recipe {spec.recipe} not found", spec.source)
    pairs = []
    for arm in spec.arms:
        for seed in spec.seeds:
            run_dir = os.path.join(spec.folder, arm, f"seed_{seed}")
            overrides = pair_overrides(spec, arm, seed, run_dir)
            try:
                recipe = load_recipe(spec.recipe, overrides)
            except RecipeError as e:
                key = "fixed" if _fails(spec, to_overrides(spec.fixed)) else f"arms.{arm}"
                raise StudyError.at(key, str(e), spec.source) from None
            pairs.append(Pair(arm, seed, run_dir, overrides, recipe))
    return pairs


def _fails(spec: StudySpec, overrides: list[str]) -> bool:
    try:
        load_recipe(spec.recipe, overrides)
        return False
    except RecipeError:
        return True


def trained_with(recipe: Recipe) -> dict:
    """The recipe's keys that define what a run trains (bookkeeping left out), flattened."""
    return {k: v for k, v in flatten(to_dict(recipe)).items()
            if not any(k == b or (b.endswith(".") and k.startswith(b)) for b in BOOKKEEPING)}


def check_folder(spec: StudySpec, pairs: list[Pair], resume: bool) -> None:
    """A study folder in use needs ``resume``; its finished runs must have the recipes asked for now."""
    used = os.path.isdir(spec.folder) and bool(os.listdir(spec.folder))
    if used and not resume:
        raise StudyError.at("name", f"the study folder {spec.folder} already holds a study; continue it with "
                            f"--resume, or choose another name or out_dir", spec.source)
    if os.path.exists(spec.folder) and not os.path.isdir(spec.folder):
        raise StudyError.at("out_dir", f"{spec.folder} is a file, not a folder", spec.source)
    for p in pairs:
        saved = os.path.join(p.run_dir, "recipe.yaml")
        if not (p.finished and os.path.isfile(saved)):
            continue
        from chorus.config import recipe_from_dict

        with open(saved) as f:
            before = trained_with(recipe_from_dict(yaml_load(f) or {}))
        now = trained_with(p.recipe)
        diff = {k: (before.get(k), now.get(k)) for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)}
        if diff:
            shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in list(diff.items())[:6])
            raise StudyError.at(f"arms.{p.arm}", f"seed {p.seed} was trained with another recipe ({shown}) in "
                                f"{p.run_dir}; use another name or out_dir for the changed study", spec.source)


def preflight(spec: StudySpec, resume: bool) -> list[Pair]:
    """Everything refused before anything is written: recipes, shards, the study folder."""
    from chorus.train import components

    pairs = plan(spec)
    for recipe in {p.recipe.data.shards: p.recipe for p in pairs}.values():
        components.open_shards(recipe)             # a DataError names the folder
    check_folder(spec, pairs, resume)
    return pairs


def run_study(spec: StudySpec, resume: bool = False, stream=None) -> StudyOutcome:
    """Run (or, with ``resume``, continue) the study; returns its tables and where they are. The
    unfinished pairs train as Ray trials (:func:`chorus.study.pairs.run_pairs`); a driver interrupted
    (Ctrl+C) before they end raises ``KeyboardInterrupt`` once the parent run is closed KILLED."""
    from chorus.study.pairs import run_pairs

    stream = stream if stream is not None else sys.stderr
    pairs = preflight(spec, resume)
    os.makedirs(spec.folder, exist_ok=True)
    with open(os.path.join(spec.folder, "study.yaml"), "w") as f:
        json.dump(spec.to_dict(), f, indent=1)          # JSON is YAML
    parent = _parent(spec, pairs[0].recipe)
    outcome = StudyOutcome(spec.folder, {}, "", parent.run_id)
    try:
        outcome.skipped = [(p.arm, p.seed) for p in pairs if p.finished]
        todo = [p for p in pairs if not p.finished]
        if todo:
            done = run_pairs(spec, todo, parent.run_id, parent.uri, parent.run_id is not None, stream)
            outcome.trained, outcome.failed = done.trained, done.failed
            for arm, seed, message in done.failed:       # the study went on; the pair is reported
                print(f"[chorus] study: {arm} seed {seed} failed: {message}", file=stream, flush=True)
            if done.interrupted:
                raise KeyboardInterrupt(f"{len(done.interrupted)} run(s) of the study unfinished")
        runs = {(p.arm, p.seed): p.run_dir for p in pairs if p.finished}
        study = agg.aggregate(spec.name, list(spec.arms), spec.seeds, runs, spec.split)
        study.update(recipe=spec.recipe, fixed=spec.fixed, arm_overrides=spec.arms, parent_run_id=parent.run_id,
                     failed=[{"arm": a, "seed": s, "error": m} for a, s, m in outcome.failed])
        paths = agg.write(study, spec.folder)
        _record(parent, study, paths)
    except BaseException as e:
        parent.end("KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        raise
    parent.end("FINISHED" if not outcome.failed and not study["missing"] else "FAILED")
    outcome.study, outcome.table = study, agg.markdown(study)
    return outcome


def _parent(spec: StudySpec, recipe: Recipe):
    """The study's MLflow parent run (reopened on resume; its id kept in ``study_state.json``)."""
    from chorus.tracking import Tracker

    tc = recipe.tracking
    state_path = os.path.join(spec.folder, STATE)
    old = {}
    if os.path.isfile(state_path):
        with open(state_path) as f:
            old = json.load(f)
    tracker = Tracker(enabled=tc.enabled, uri=tc.uri, experiment=tc.experiment, artifacts=tc.artifacts)
    params = {k: v for k, v in flatten(spec.to_dict()).items() if not k.startswith("arms.")}
    params.update({f"arms.{a}": json.dumps(o) for a, o in spec.arms.items()})
    tracker.start(spec.name, params, tags={STUDY_TAG: spec.name}, resume_run_id=old.get("mlflow_run_id"))
    with open(state_path, "w") as f:
        json.dump({"mlflow_run_id": tracker.run_id, "tracking_uri": tracker.uri, "experiment": tc.experiment}, f)
    return tracker


def _record(parent, study: dict, paths) -> None:
    """The study's tables on the parent run: ``study/{arm}/{metric}_mean|_std|_p`` (p: Welch's t-test
    against the first arm, where testable), ``study/{arm}/n`` and the written files."""
    metrics = {}
    for arm, a in study["arms"].items():
        for key, s in a["metrics"].items():
            metrics[f"study/{arm}/{key}_mean"] = s["mean"]
            if s["std"] is not None:
                metrics[f"study/{arm}/{key}_std"] = s["std"]
            if (s.get("vs_reference") or {}).get("p") is not None:     # Welch's p against the first arm
                metrics[f"study/{arm}/{key}_p"] = s["vs_reference"]["p"]
        metrics[f"study/{arm}/n"] = len(a["seeds"])
    parent.log_metrics(metrics, 0)
    for path in paths:
        parent.log_artifact(path)
