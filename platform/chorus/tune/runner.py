"""Run (or resume) a search: Ray Tune over the one training loop, then the table, the best recipe and
the heatmap, all logged to the search's MLflow parent run and printed.

Everything a search writes lies in ``{storage_path}/{name}/``: Ray Tune's experiment state and trial
folders (checkpoints included), ``chorus_search.json`` (the search recipe and the MLflow parent run
id, read back by ``--resume``), ``results.csv``, ``best_recipe.yaml`` and ``heatmap.png``.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Optional

from chorus.config.search import SearchRecipe, SearchRecipeError
from chorus.tune import heatmap as hm
from chorus.tune.base_recipe import check_against_base, fixed_overrides, write_best_recipe
from chorus.tune.cluster import ray_session
from chorus.tune.mlflow_runs import ChildRunCloser, SearchRuns
from chorus.tune.results import best_row, format_table, trial_rows, write_csv
from chorus.tune.schedulers import make_scheduler
from chorus.tune.space import num_trials, param_space, search_keys
from chorus.tune.spec import check_resume, check_scheduler_epochs

STATE_FILE = "chorus_search.json"
DRIVER_CPU = 0.01     # CPU reserved by a distributed trial's driver (resources.workers > 1)


@dataclass
class SearchOutcome:
    """What a finished search produced."""

    experiment_dir: str
    parent_run_id: Optional[str]
    rows: list
    best: Optional[dict]
    best_recipe: Optional[str]
    table: str
    heatmap: Optional[str]
    fit_s: float
    ray_startup_s: float
    interrupted: bool = False


def _tracking(spec: SearchRecipe, base) -> tuple[str, str, bool]:
    from chorus.tracking import default_uri

    uri = spec.tracking.uri or base.tracking.uri or default_uri()
    experiment = spec.tracking.experiment or base.tracking.experiment
    return uri, experiment, bool(spec.tracking.enabled and base.tracking.enabled)


def _trainable(spec: SearchRecipe, ctx: dict):
    from ray import tune

    from chorus.tune.trainable import run_distributed_trial, run_trial

    res = spec.resources
    if res.workers > 1:
        # The trial itself only drives a TorchTrainer, whose workers hold the CPUs and GPUs; Ray wants
        # a non-empty request for the driver, so it asks for a sliver of a CPU.
        return tune.with_resources(tune.with_parameters(run_distributed_trial, ctx=ctx), {"cpu": DRIVER_CPU})
    return tune.with_resources(tune.with_parameters(run_trial, ctx=ctx), {"cpu": res.cpus, "gpu": res.gpus})


def _checkpoints_kept(spec: SearchRecipe) -> int:
    """Ray checkpoints kept per trial: PBT clones other trials' recent checkpoints, so it keeps >= 4."""
    return max(spec.checkpoint_keep, 4) if spec.scheduler.type == "pbt" else spec.checkpoint_keep


def _scheduler(spec: SearchRecipe, epochs: int):
    """The trial scheduler, built (and so checked by Ray too) before the search writes anything."""
    check_scheduler_epochs(spec, epochs)
    try:
        return make_scheduler(spec, epochs)
    except (AssertionError, ValueError, TypeError) as exc:
        raise SearchRecipeError(f"'scheduler' in {spec.source}: {exc or type(exc).__name__}") from None


def _dirname(trial) -> str:
    return trial.trial_id


def run_search(spec: SearchRecipe, *, address: Optional[str] = None, resume: bool = False,
               retry_failed: bool = False, num_cpus: Optional[int] = None, stream=None) -> SearchOutcome:
    """Run the search ``spec`` (``resume``: continue the interrupted one in its storage folder,
    finishing only unfinished trials; ``retry_failed``: rerun failed trials as well)."""
    stream = stream or sys.stdout
    base = check_against_base(spec)
    epochs = int(base.train.epochs)
    scheduler = _scheduler(spec, epochs)       # a bad value fails here, before anything is written
    exp_dir = os.path.join(spec.storage_path, spec.name)
    state_path = os.path.join(exp_dir, STATE_FILE)
    uri, experiment, tracking = _tracking(spec, base)
    resume_run_id = None
    if resume:
        if not os.path.isfile(state_path):
            raise SearchRecipeError(f"--resume: no search to resume in {exp_dir} (no {STATE_FILE})")
        with open(state_path) as fh:
            saved = json.load(fh)
        check_resume(spec, saved.get("search", {}))      # the same trials, or refuse naming the keys
        resume_run_id = saved.get("parent_run_id")
        uri, experiment = saved.get("uri", uri), saved.get("experiment", experiment)
    elif os.path.exists(exp_dir) and os.listdir(exp_dir):
        raise SearchRecipeError(f"{exp_dir} already holds a search named {spec.name!r}: resume it with "
                                f"--resume, or give another name= or storage_path=")
    os.makedirs(exp_dir, exist_ok=True)

    runs = SearchRuns(uri, experiment, enabled=tracking)
    params = {"search.name": spec.name, "search.base": spec.base, "search.metric": spec.metric,
              "search.mode": spec.mode, "search.scheduler": spec.scheduler.type,
              "search.num_trials": num_trials(spec), "search.max_concurrent": spec.max_concurrent}
    params.update({f"space.{k}": f"{d.kind} {list(d.values)}" for k, d in spec.space.items()})
    params.update({f"fixed.{k}": v for k, v in spec.fixed.items()})
    parent_id = runs.start(spec.name, params, resume_run_id=resume_run_id)
    with open(state_path, "w") as fh:
        json.dump({"search": spec.to_dict(), "parent_run_id": parent_id, "uri": uri,
                   "experiment": experiment}, fh, indent=1)

    ctx = {"base": spec.base, "fixed": fixed_overrides(spec), "keys": search_keys(spec),
           "metric": spec.metric, "cpus": spec.resources.cpus, "gpus": spec.resources.gpus,
           "workers": spec.resources.workers, "parent_run_id": parent_id, "uri": uri,
           "experiment": experiment, "tracking": tracking,
           "exp_dir": exp_dir, "train_storage": os.path.join(exp_dir, "ray_train"), "cwd": os.getcwd(),
           "checkpoint_keep": _checkpoints_kept(spec)}
    status = "FAILED"
    try:
        with ray_session(address, num_cpus=num_cpus) as session:
            print(f"[chorus tune] {spec.name}: {num_trials(spec)} trials, {spec.max_concurrent} at a time, "
                  f"scheduler {spec.scheduler.type}, Ray {session['address']} "
                  f"(started in {session['startup_s']:.1f} s)", file=stream, flush=True)
            t0 = time.perf_counter()
            results = _fit(spec, ctx, exp_dir, scheduler, uri, parent_id, resume, retry_failed)
            fit_s = time.perf_counter() - t0
        unfinished, missing = _unfinished(exp_dir, num_trials(spec))
        if unfinished or missing:
            print(f"\n[chorus tune] interrupted: {len(unfinished)} trial(s) unfinished, {missing} not started; "
                  f"the state is saved in {exp_dir}; continue with: chorus tune {spec.source} --resume",
                  file=stream, flush=True)
            status = "KILLED"
        outcome = _finish(spec, results, epochs, exp_dir, runs, stream, fit_s, session["startup_s"],
                          unfinished, interrupted=bool(unfinished or missing))
        if not (unfinished or missing):
            status = "FINISHED"
        return outcome
    finally:
        runs.close_open_children()
        runs.end(status)


def _fit(spec, ctx, exp_dir, scheduler, uri, parent_id, resume, retry_failed):
    from ray import tune

    trainable = _trainable(spec, ctx)
    if resume:
        tuner = tune.Tuner.restore(exp_dir, trainable, resume_unfinished=True,
                                   resume_errored=retry_failed, restart_errored=False)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=param_space(spec),
            tune_config=tune.TuneConfig(
                metric=spec.metric, mode=spec.mode, scheduler=scheduler,
                num_samples=spec.num_samples, max_concurrent_trials=spec.max_concurrent,
                trial_dirname_creator=_dirname),
            run_config=tune.RunConfig(
                name=spec.name, storage_path=spec.storage_path,
                failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=_checkpoints_kept(spec)),
                callbacks=[ChildRunCloser(uri, parent_id)], verbose=1),
        )
    return tuner.fit()


def _last_metrics(results, rows: list) -> list:
    """Each row's trial's last reported metrics (rows and results matched by trial folder)."""
    by_dir = {os.path.basename(str(r.path).rstrip("/")): (r.metrics or {}) for r in results}
    return [by_dir.get(str(row["trial_id"]), {}) for row in rows]


def _unfinished(exp_dir: str, expected: int) -> tuple[set, int]:
    """Trials the saved experiment state holds as neither terminated nor errored, and how many trials
    were never created: both non-empty/non-zero only for an interrupted search. (Read from the state
    Ray saves on disk: after an interrupt Ray marks its in-memory trials terminated.)"""
    from ray.tune import ExperimentAnalysis

    trials = ExperimentAnalysis(exp_dir).trials
    unfinished = {t.trial_id for t in trials if t.status not in ("TERMINATED", "ERROR")}
    return unfinished, max(0, expected - len(trials))


def _finish(spec, results, epochs, exp_dir, runs: SearchRuns, stream, fit_s, startup_s,
            unfinished: set, interrupted: bool) -> SearchOutcome:
    rows = trial_rows(spec, results, epochs)
    for row in rows:
        if row["trial_id"] in unfinished:
            row["status"] = "unfinished"
    table_path = os.path.join(exp_dir, "results.csv")
    write_csv(rows, table_path)
    best = best_row(spec, rows) if not interrupted else None
    best_path = heat_path = None
    print(f"\n[chorus tune] results ({len(rows)} trials, {fit_s:.1f} s):", file=stream)
    print(format_table(rows), file=stream)
    if best is not None:
        values = {k: best[k] for k in search_keys(spec) if k in best}
        score = best[f"{spec.metric} (best)"]
        best_path = write_best_recipe(
            spec, values, os.path.join(exp_dir, "best_recipe.yaml"),
            note=f"best trial {best['trial_id']} of search {spec.name}: {spec.metric} = {score:.4f}")
        print(f"\nbest trial {best['trial_id']}: {spec.metric} = {score:.4f} with "
              + ", ".join(f"{k}={v}" for k, v in values.items()), file=stream)
        print(f"best config as a recipe: {best_path}", file=stream)
        runs.log_metrics({f"best/{spec.metric}": score})
        runs.set_tag("chorus.tune.best_trial", str(best["trial_id"]))
    value_col = f"{spec.metric} (best)"
    cells = hm.grid(rows, spec.heatmap.x, spec.heatmap.y, value_col)
    if cells is not None:
        xs, ys, grid = cells
        print(f"\n{spec.metric} (best per trial) over {spec.heatmap.y} x {spec.heatmap.x}:", file=stream)
        print(hm.format_grid(xs, ys, grid, spec.heatmap.x, spec.heatmap.y), file=stream)
        heat_path = hm.plot(xs, ys, grid, spec.heatmap.x, spec.heatmap.y,
                            f"{spec.name}: {spec.metric}", os.path.join(exp_dir, "heatmap.png"))
    for path in (table_path, best_path, heat_path):
        if path:
            runs.log_artifact(path)
    runs.close_open_children()
    runs.label_children({str(r["trial_id"]): r["status"] for r in rows})
    runs.add_missing_tables({str(r["trial_id"]): last for r, last in zip(rows, _last_metrics(results, rows))})
    counts = {s: sum(r["status"] == s for r in rows) for s in ("completed", "stopped", "failed", "unfinished")}
    runs.log_metrics({f"trials/{k}": float(v) for k, v in counts.items()})
    print(f"trials: {counts['completed']} completed, {counts['stopped']} stopped early, "
          f"{counts['failed']} failed, {counts['unfinished']} unfinished; results in {exp_dir}", file=stream)
    if runs.run_id:
        print(f"MLflow parent run {runs.run_id} ({runs.uri}, experiment {runs.experiment!r})", file=stream)
    stream.flush()
    return SearchOutcome(exp_dir, runs.run_id, rows, best, best_path, table_path, heat_path, fit_s, startup_s,
                         interrupted=interrupted)
