"""Train a study's unfinished pairs as Ray Tune trials: the driver side (:mod:`chorus.study.trial` is the
trial). The tune machinery: the local Ray instance (or a cluster, ``RAY_ADDRESS``) of
:func:`chorus.tune.cluster.ray_session`, whose clean-up of a killed driver's leftovers runs first; a
``Tuner`` over a grid of the pairs with no scheduler (FIFO: every trial trains its whole recipe, none is
stopped early) and no retries; :class:`chorus.tune.mlflow_runs.ChildRunCloser` ending a failed pair's
MLflow child. Each call is one Ray experiment, ``{study folder}/ray/call_{n}/`` (Ray's trial records);
what a pair trains and where lies in its run folder, so ``--resume`` plans afresh from the run folders
(finished pairs skipped, interrupted ones resumed from their checkpoints) instead of restoring Ray's state.

Concurrency: ``concurrency`` in the study file, else the cores (this process's CPU affinity) // (torch
threads per run + 1 for its data reader), torch threads being ``OMP_NUM_THREADS`` when set, else 1; at
most the number of pairs to train. Each trial asks Ray for cores // concurrency CPUs and trains with
``OMP_NUM_THREADS`` threads when set, else its share of the cores minus one for the reader
(:func:`chorus.train.setup.threads_per_process`). On 2 cores that is one pair at a time.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

RAY_FOLDER = "ray"


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def torch_threads() -> Optional[int]:
    """``OMP_NUM_THREADS`` as a number of threads, or None when unset or not a number."""
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        return None


def concurrency(asked: Optional[int], todo: int, n_cores: Optional[int] = None) -> int:
    """Trials at a time (see the module docstring)."""
    n_cores = n_cores or cores()
    n = asked if asked is not None else max(1, n_cores // ((torch_threads() or 1) + 1))
    return max(1, min(n, max(1, todo)))


def trial_threads(n: int, n_cores: Optional[int] = None) -> int:
    from chorus.train.setup import threads_per_process

    return torch_threads() or threads_per_process(n, n_cores or cores())


@dataclass
class PairsOutcome:
    trained: list = field(default_factory=list)      # (arm, seed) finished by this call
    failed: list = field(default_factory=list)       # (arm, seed, message)
    interrupted: list = field(default_factory=list)  # (arm, seed): neither finished nor failed


def _call_name(folder: str) -> str:
    root = os.path.join(folder, RAY_FOLDER)
    n = 1
    while os.path.exists(os.path.join(root, f"call_{n}")):
        n += 1
    return f"call_{n}"


def run_pairs(spec, todo: list, parent_run_id: Optional[str], uri: Optional[str], tracking: bool,
              stream) -> PairsOutcome:
    """Train the pairs ``todo`` (:class:`chorus.study.runner.Pair`) as Ray trials; returns what became of them."""
    from ray import tune

    from chorus.study.trial import PAIR_TAG, pair_id, run_pair
    from chorus.tune.cluster import ray_session
    from chorus.tune.mlflow_runs import ChildRunCloser

    n_cores = cores()
    n = concurrency(spec.concurrency, len(todo), n_cores)
    name = _call_name(spec.folder)
    storage = os.path.join(spec.folder, RAY_FOLDER)
    ctx = {"recipe": spec.recipe, "parent_run_id": parent_run_id, "uri": uri, "tracking": tracking,
           "child_tag": PAIR_TAG, "threads": trial_threads(n, n_cores), "cwd": os.getcwd(),
           "driver_pid": os.getpid(), "experiment_dir": os.path.join(storage, name),
           "pairs": {pair_id(p.arm, p.seed): {"id": pair_id(p.arm, p.seed), "run_dir": p.run_dir,
                                              "overrides": list(p.overrides)} for p in todo}}
    by_id = {pair_id(p.arm, p.seed): p for p in todo}
    cpus = max(1, n_cores // n)
    with ray_session(num_cpus=n_cores) as session:
        print(f"[chorus] study {spec.name}: {len(todo)} run(s) as Ray trials, {n} at a time ({cpus} CPU(s) and "
              f"{ctx['threads']} torch thread(s) each), Ray {session['address']} (started in "
              f"{session['startup_s']:.1f} s); Ray's records in {ctx['experiment_dir']}", file=stream, flush=True)
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(run_pair, ctx=ctx), {"cpu": cpus}),
            param_space={"pair": tune.grid_search(list(ctx["pairs"]))},
            # reuse_actors: a worker process trains its next pair warm (torch imported, kernels chosen),
            # as one process trained them all before; each pair still builds its own run from its recipe
            tune_config=tune.TuneConfig(num_samples=1, max_concurrent_trials=n, reuse_actors=True,
                                        trial_dirname_creator=_dirname),
            run_config=tune.RunConfig(
                name=name, storage_path=storage, failure_config=tune.FailureConfig(max_failures=0),
                callbacks=[ChildRunCloser(uri or "", parent_run_id if tracking else None, tag=PAIR_TAG,
                                          config_key="pair"), PairLines(len(todo), spec.progress)],
                verbose=0),
        )
        results = tuner.fit()
    errors = {r.config["pair"]: r.error for r in results if r.config and r.error is not None}
    out = PairsOutcome()
    for pid, p in by_id.items():
        if p.finished:
            out.trained.append((p.arm, p.seed))
        elif pid in errors and not _stopped(p.run_dir, ctx["experiment_dir"]):
            out.failed.append((p.arm, p.seed, _message(p.run_dir, errors[pid])))
        else:
            out.interrupted.append((p.arm, p.seed))
            _close_interrupted(uri, parent_run_id if tracking else None, pid)
    return out


def _close_interrupted(uri: Optional[str], parent_run_id: Optional[str], pid: str) -> None:
    """An interrupted pair's MLflow child (Ray stopped its trial) ends KILLED; ``--resume`` reopens it."""
    from chorus.study.trial import PAIR_TAG
    from chorus.tune.mlflow_runs import close_child

    try:
        close_child(uri or "", parent_run_id, pid, "KILLED", "interrupted", tag=PAIR_TAG)
    except Exception as exc:  # noqa: BLE001 - bookkeeping must not hide the interrupt
        print(f"[chorus] study: could not close the MLflow run of {pid}: {exc}", flush=True)


def _dirname(trial) -> str:
    """Ray's folder of a trial: its pair, ``{arm}-seed_{seed}``."""
    return trial.config["pair"].replace("/", "-")


def _record(run_dir: str) -> dict:
    import json

    from chorus.study.trial import TRIAL_FILE

    try:
        with open(os.path.join(run_dir, TRIAL_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _stopped(run_dir: str, experiment_dir: str) -> bool:
    """The pair's trial of this call was interrupted (Ray stopped it), rather than failing."""
    rec = _record(run_dir)
    return bool(rec.get("interrupted")) and rec.get("experiment") == experiment_dir


def _message(run_dir: str, error) -> str:
    """The pair's error as its trial recorded it (``ray_trial.json``), else the last line of Ray's."""
    msg = _record(run_dir).get("error")
    if msg:
        return msg
    lines = [x for x in str(error).strip().splitlines() if x.strip()]
    return lines[-1] if lines else type(error).__name__


def _callback_base():
    from ray.tune import Callback

    return Callback


class PairLines(_callback_base()):
    """Ray Tune callback (driver side): one line per pair that ends (finished or failed), when ``show``."""

    def __init__(self, total: int, show: bool):
        self.total, self.show, self.done = total, show, 0

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._line(trial, "done")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._line(trial, "failed")

    def _line(self, trial, what: str) -> None:
        self.done += 1
        if self.show:
            print(f"[chorus] study: {trial.config.get('pair')} {what} ({self.done}/{self.total})", flush=True)
