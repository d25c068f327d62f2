"""One pair of a study (arm × seed) as a Ray Tune trial: the worker side of :mod:`chorus.study.pairs`.

The trial trains exactly the recipe the study gives the pair (:func:`chorus.study.runner.pair_overrides`
plus the MLflow parent run and the Ray trial id as a tag) in the pair's own run folder
``{out_dir}/{name}/{arm}/seed_{seed}/`` with ``train.resume=auto``: an interrupted pair resumes from that
folder's latest checkpoint; one without a checkpoint starts again and its earlier MLflow child (a
driver killed before the pair's first checkpoint) is retired first (:func:`chorus.tune.trainable.fresh_start`),
so the study keeps one child per pair. Each epoch's metrics go to Ray (:class:`PairHooks`, no
checkpoints: the run folder holds them; a stop request from Ray interrupts the run). ``ray_trial.json`` in the run folder records the trial id,
this worker's pid and host and the driver's pid; a failed pair's error is added to it before the
exception goes on to Ray, which marks the trial errored (the study goes on with the other pairs).
"""
from __future__ import annotations

import json
import os
import signal
import socket

from chorus.train.interrupt import Interrupted
from chorus.tune.trainable import TuneHooks

PAIR_TAG = "chorus.study.pair"      # "{arm}/seed_{seed}" on the pair's MLflow child: found again on resume
TRIAL_FILE = "ray_trial.json"


def pair_id(arm: str, seed: int) -> str:
    return f"{arm}/seed_{seed}"


def _write(run_dir: str, record: dict) -> None:
    os.makedirs(run_dir, exist_ok=True)
    tmp = os.path.join(run_dir, TRIAL_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, os.path.join(run_dir, TRIAL_FILE))


class PairHooks(TuneHooks):
    """:class:`TuneHooks` reporting metrics only, where Ray's request to stop the trial (the study's
    experiment ends early: Ctrl+C of the driver) interrupts the run -- MLflow child KILLED, the epoch's
    checkpoint kept for ``--resume`` -- instead of ending it early as if it were finished."""

    def __init__(self, run_dir: str):
        from ray import tune

        super().__init__("val/acc", tune.report, None)
        self.run_dir = run_dir

    def on_epoch_end(self, epoch: int, metrics: dict, checkpoint_dir) -> None:
        super().on_epoch_end(epoch, metrics, checkpoint_dir)
        if self.stopped:
            from chorus.train.checkpoint import read_state

            ck = checkpoint_dir if checkpoint_dir and os.path.isdir(checkpoint_dir) else None
            raise Interrupted(signal.SIGINT, int(read_state(ck)["step"]) if ck else 0, ck, self.run_dir)


def pair_recipe(ctx: dict, pair: dict, trial_id: str):
    """The pair's training recipe: the study's overrides, then the parent run and the trial's tags."""
    from chorus.config import load_recipe
    from chorus.tune.mlflow_runs import TRIAL_TAG

    base = load_recipe(ctx["recipe"], pair["overrides"])
    tags = {**base.tracking.tags, PAIR_TAG: pair["id"], TRIAL_TAG: trial_id}
    extra = [f"tracking.tags={json.dumps(tags)}"]
    if ctx.get("parent_run_id"):
        extra.append(f"tracking.parent_run_id={json.dumps(ctx['parent_run_id'])}")
    return load_recipe(ctx["recipe"], pair["overrides"] + extra)


def run_pair(config: dict, ctx: dict) -> None:
    """Ray Tune function trainable: train the pair ``config["pair"]`` of ``ctx["pairs"]``."""
    from ray import tune

    from chorus.train import NonFiniteLoss
    from chorus.train import run as train_run
    from chorus.train.checkpoint import latest_checkpoint
    from chorus.tune.trainable import TrialFailed, _enter_cwd, _set_threads, fresh_start

    _set_threads(ctx["threads"])
    _enter_cwd(ctx)
    pair = ctx["pairs"][config["pair"]]
    run_dir = pair["run_dir"]
    trial_id = tune.get_context().get_trial_id()
    record = {"trial_id": trial_id, "pair": pair["id"], "pid": os.getpid(), "host": socket.gethostname(),
              "driver_pid": ctx["driver_pid"], "experiment": ctx["experiment_dir"],
              "threads": ctx["threads"]}
    resumed_from = latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    record["resumed_from"] = resumed_from
    if resumed_from is None:
        fresh_start(ctx, pair["id"], run_dir)
    _write(run_dir, record)
    recipe = pair_recipe(ctx, pair, trial_id)
    try:
        result = train_run(recipe, hooks=PairHooks(run_dir))
    except (NonFiniteLoss, TrialFailed) as e:
        _write(run_dir, {**record, "error": f"{type(e).__name__}: {e}"})
        raise
    except Interrupted as e:
        _write(run_dir, {**record, "interrupted": str(e)})
        raise
    if resumed_from and (result or {}).get("mlflow_run_id"):
        _retag(result.get("tracking_uri") or ctx.get("uri"), result["mlflow_run_id"], trial_id)


def _retag(uri: str, run_id: str, trial_id: str) -> None:
    """A resumed pair continues its MLflow child, made by an earlier trial: tag it with this trial."""
    from chorus.tune.mlflow_runs import TRIAL_TAG

    try:
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri=uri).set_tag(run_id, TRIAL_TAG, trial_id)
    except Exception as exc:  # noqa: BLE001 - bookkeeping must not fail a trained pair
        print(f"[chorus] study: could not tag MLflow run {run_id} with trial {trial_id}: {exc}", flush=True)
