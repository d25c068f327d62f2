"""The Ray Tune trial: one call of the one training loop, ``chorus.train.run(recipe, hooks)``.

A trial's recipe is the base training recipe with, in order, the trial defaults below, the search
recipe's ``fixed`` overrides, the trial's sampled values and the trial's bookkeeping (MLflow parent run
and run name, the run folder ``{storage_path}/{name}/{trial id}/run``, the checkpoint to resume from),
all as ``key.sub=value`` overrides. :class:`TuneHooks` reports every epoch's metrics and checkpoint to
Ray Tune. A non-finite loss (the loop's ``NonFiniteLoss``) or metric raises, so that Ray marks the
trial failed and retries it from its last checkpoint up to ``max_failures`` times.

With ``resources.workers > 1`` the trial runs the same loop under Ray Train's ``TorchTrainer`` on that
many workers (:func:`run_distributed_trial`); rank 0's reports reach Ray Tune. Ray Train keeps the
search's ``checkpoint_keep`` checkpoints of such a trial; ``scheduler: pbt`` is refused with it (the
search recipe check): PBT's exploit clones a trial's checkpoint into another, which a Ray Train
(Train V2) trial cannot take over.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from typing import Any, Callable, Optional

from chorus.train.hooks import Hooks
from chorus.tune.mlflow_runs import TRIAL_TAG, supersede_children
from chorus.tune.space import to_overrides

# Trial defaults (a search recipe's ``fixed`` section overrides them): no progress bars, no checkpoint
# artifacts in MLflow and one local checkpoint (Ray keeps copies), no test-set pass (trials are
# compared on val).
TRIAL_DEFAULTS = ["train.progress=false", "tracking.log_checkpoint=false", "train.eval_test=false",
                  "train.keep_last=1"]


class TrialFailed(RuntimeError):
    """A trial whose loss or metric is not finite (or whose metric is missing)."""


class TuneHooks(Hooks):
    """Training hooks (:class:`chorus.train.TrainHooks`) that report each epoch to Ray
    (``report(metrics, checkpoint=...)``).

    ``report`` is ``ray.tune.report`` in a plain trial and ``ray.train.report`` in a Ray Train worker;
    ``checkpoint_cls`` the matching ``Checkpoint`` class, or None to report metrics only (a study's pair
    resumes from its own run folder's checkpoints)."""

    def __init__(self, metric: str, report: Callable, checkpoint_cls, rank: int = 0, all_ranks: bool = False,
                 epochs: Optional[int] = None):
        self.metric = metric
        self.epochs = epochs
        self.report = report
        self.checkpoint_cls = checkpoint_cls
        self.rank = rank
        # Ray Train's report is a barrier over workers: the loop must call this hook on every rank.
        self.all_ranks = all_ranks
        self.stopped = False

    def on_epoch_end(self, epoch: int, metrics: dict, checkpoint_dir: Optional[str]) -> None:
        numbers = {k: float(v) for k, v in metrics.items() if _is_number(v)}
        if self.metric not in numbers:
            raise TrialFailed(f"metric {self.metric!r} was not reported at epoch {epoch} "
                              f"(reported: {', '.join(sorted(numbers)) or 'nothing'})")
        bad = [k for k, v in numbers.items()
               if not math.isfinite(v) and (k == self.metric or k.startswith("train/loss"))]
        if bad:
            raise TrialFailed(f"non-finite {', '.join(bad)} at epoch {epoch}")
        numbers.setdefault("epoch", float(epoch + 1))     # epochs done (the loop's epoch is 0-based)
        if self.epochs is not None and epoch + 1 >= self.epochs:
            # The last epoch: Ray ends the trial without asking the scheduler (PBT would otherwise
            # clone another trial's final checkpoint into this one, leaving it nothing to train).
            numbers["done"] = True
        checkpoint = None
        if self.checkpoint_cls is not None and self.rank == 0 and checkpoint_dir and os.path.isdir(checkpoint_dir):
            checkpoint = self.checkpoint_cls.from_directory(checkpoint_dir)
        try:
            self.report(numbers, checkpoint=checkpoint)
        except SystemExit:
            # Ray asks the trial to stop (the scheduler stopped it, or the search ends): let the loop
            # finish this run cleanly (MLflow run FINISHED) instead of dying inside the report.
            self.stopped = True

    def should_stop(self) -> bool:
        return self.stopped


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def trial_recipe(ctx: dict, values: dict, trial_id: str, out_dir: str, resume: Optional[str]):
    """The validated training recipe of one trial (see the module docstring for the override order)."""
    from chorus.config import load_recipe

    overrides = TRIAL_DEFAULTS + list(ctx["fixed"]) + to_overrides(values)
    # a PBT exploit resumes another trial's checkpoint with this trial's (perturbed) searched values
    overrides.append(f"train.resume_changes={json.dumps(list(ctx['keys']))}")
    base = load_recipe(ctx["base"], overrides)
    tags = {**base.tracking.tags, TRIAL_TAG: trial_id}
    overrides += [f"tracking.run_name={json.dumps(trial_id)}",
                  f"tracking.tags={json.dumps(tags)}",
                  f"train.out_dir={json.dumps(out_dir)}"]
    if ctx.get("parent_run_id"):
        overrides.append(f"tracking.parent_run_id={json.dumps(ctx['parent_run_id'])}")
    if ctx.get("uri"):
        overrides.append(f"tracking.uri={json.dumps(ctx['uri'])}")
    if ctx.get("experiment"):
        overrides.append(f"tracking.experiment={json.dumps(ctx['experiment'])}")
    if not ctx.get("tracking", True):
        overrides.append("tracking.enabled=false")
    if resume:
        overrides.append(f"train.resume={json.dumps(resume)}")
    return load_recipe(ctx["base"], overrides)


def trial_run_dir(ctx: dict, trial_id: str) -> str:
    """The training run folder of a trial: ``run/`` inside the trial's folder in ``storage_path``
    (Ray's own trial working folder is a temporary staging area)."""
    return os.path.join(ctx["exp_dir"], trial_id, "run")


def restore_checkpoint(out_dir: str, checkpoint) -> Optional[str]:
    """Make the trial's local checkpoints exactly Ray's view of the trial: empty
    ``{out_dir}/checkpoints`` and copy Ray's checkpoint (if any) into it under its own step name.
    Returns the copied checkpoint folder, for ``train.resume`` (the run folder stays ``out_dir``)."""
    from chorus.train.checkpoint import STATE_FILE, checkpoint_name

    root = os.path.join(out_dir, "checkpoints")
    shutil.rmtree(root, ignore_errors=True)
    if checkpoint is None:
        return None
    os.makedirs(root, exist_ok=True)
    with checkpoint.as_directory() as src:
        with open(os.path.join(src, STATE_FILE)) as fh:
            step = int(json.load(fh)["step"])
        dst = os.path.join(root, checkpoint_name(step))
        shutil.copytree(src, dst)
    return dst


def fresh_start(ctx: dict, trial_id: str, out_dir: str) -> None:
    """A trial (re)starting without a checkpoint: an earlier attempt's MLflow child run (a driver or
    trial killed before the first report) is retired, so the search keeps one child per trial
    (:func:`chorus.tune.mlflow_runs.supersede_children`; ``ctx["child_tag"]`` names the tag that holds
    ``trial_id``, default the Ray trial id's), and its stale ``run.json`` goes."""
    if os.path.isfile(os.path.join(out_dir, "run.json")):
        os.remove(os.path.join(out_dir, "run.json"))
    if ctx.get("tracking", True) and ctx.get("parent_run_id"):
        try:
            n = supersede_children(ctx["uri"], ctx["parent_run_id"], trial_id, tag=ctx.get("child_tag", TRIAL_TAG))
        except Exception as exc:  # noqa: BLE001 - bookkeeping must not stop the trial
            print(f"[chorus tune] could not retire the earlier MLflow runs of trial {trial_id}: {exc}", flush=True)
            return
        if n:
            print(f"[chorus tune] trial {trial_id} starts again from scratch: its earlier MLflow run "
                  f"({n}) is closed KILLED, tagged superseded and deleted (restorable)", flush=True)


def _enter_cwd(ctx: dict) -> None:
    """Relative paths of recipes (``data.shards``, ...) mean the folder ``chorus tune`` ran in; Ray
    starts trials in their trial folder, so go back there when this machine has it."""
    if ctx.get("cwd") and os.path.isdir(ctx["cwd"]):
        os.chdir(ctx["cwd"])


def _set_threads(cpus: float) -> None:
    import torch

    n = max(1, int(cpus))
    torch.set_num_threads(n)
    os.environ["OMP_NUM_THREADS"] = str(n)


def run_trial(config: dict, ctx: dict) -> None:
    """Ray Tune function trainable for one single-process trial."""
    from ray import tune

    from chorus.train import run as train_run
    from chorus.tune.space import trial_values_from_keys

    _set_threads(ctx["cpus"])
    _enter_cwd(ctx)
    trial_id = tune.get_context().get_trial_id()
    out_dir = trial_run_dir(ctx, trial_id)
    values = trial_values_from_keys(ctx["keys"], config)
    resume = restore_checkpoint(out_dir, tune.get_checkpoint())
    if resume is None:
        fresh_start(ctx, trial_id, out_dir)
    recipe = trial_recipe(ctx, values, trial_id, out_dir, resume)
    train_run(recipe, hooks=TuneHooks(ctx["metric"], tune.report, tune.Checkpoint, epochs=recipe.train.epochs))


def run_distributed_trial(config: dict, ctx: dict) -> None:
    """Ray Tune function trainable that runs the trial on ``ctx["workers"]`` Ray Train workers."""
    from ray import train, tune
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from chorus.tune.space import trial_values_from_keys

    trial_id = tune.get_context().get_trial_id()
    loop_config = {"ctx": ctx, "values": trial_values_from_keys(ctx["keys"], config),
                   "trial_id": trial_id, "out_dir": trial_run_dir(ctx, trial_id)}
    use_gpu = float(ctx.get("gpus") or 0) > 0
    per_worker = {"CPU": float(ctx["cpus"])}
    if use_gpu:
        per_worker["GPU"] = float(ctx["gpus"])
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config=loop_config,
        scaling_config=train.ScalingConfig(num_workers=int(ctx["workers"]), use_gpu=use_gpu,
                                           resources_per_worker=per_worker),
        # Same name and storage on a retry or resume: Ray Train restarts from its latest checkpoint.
        run_config=train.RunConfig(name=f"train-{trial_id}", storage_path=ctx["train_storage"],
                                   failure_config=train.FailureConfig(max_failures=0),
                                   # Ray Train keeps every reported checkpoint unless told; as many as the
                                   # search keeps in Tune (which may restore any of them)
                                   checkpoint_config=train.CheckpointConfig(
                                       num_to_keep=int(ctx.get("checkpoint_keep") or 2)),
                                   callbacks=[TuneReportCallback()]),
    )
    trainer.fit()


def _worker_loop(cfg: dict) -> None:
    """The loop of one Ray Train worker: the same ``chorus.train.run``; every rank reports."""
    from ray import train

    from chorus.train import run as train_run

    import torch.distributed as dist

    ctx = cfg["ctx"]
    _set_threads(ctx["cpus"])
    _enter_cwd(ctx)
    if not float(ctx.get("gpus") or 0):
        # Accelerate treats a CPU process group (gloo, set up by Ray Train) as one only when told so.
        os.environ["ACCELERATE_USE_CPU"] = "1"
    context = train.get_context()
    rank = context.get_world_rank()
    if context.get_local_rank() == 0:          # one copy per node, then everyone resumes from it
        restore_checkpoint(cfg["out_dir"], train.get_checkpoint())
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    resume = _local_checkpoint(cfg["out_dir"])
    if resume is None and rank == 0:
        fresh_start(ctx, cfg["trial_id"], cfg["out_dir"])
    recipe = trial_recipe(ctx, cfg["values"], cfg["trial_id"], cfg["out_dir"], resume)
    hooks = TuneHooks(ctx["metric"], train.report, train.Checkpoint, rank=rank, all_ranks=True,
                      epochs=recipe.train.epochs)
    train_run(recipe, hooks=hooks)


def _local_checkpoint(out_dir: str) -> Optional[str]:
    from chorus.train.checkpoint import latest_checkpoint

    return latest_checkpoint(os.path.join(out_dir, "checkpoints"))
