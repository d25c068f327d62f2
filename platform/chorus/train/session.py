"""The set-up half of the training recipe: one run's parts, made once (:class:`Run`), and where it
stands (:class:`Progress`): the run folder and resume point, the prepared model and optimizer, the
schedule, precision, checkpoints (every save goes through :meth:`Run.save_checkpoint`) and MLflow.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import nn

from chorus.config import Recipe, RecipeError, flatten, save_recipe, to_dict
from chorus.folder_lock import FolderLock, FolderLockedError
from chorus.tracking import NullTracker, Tracker
from chorus.train import components, resume_check, rundir, setup
from chorus.train.checkpoint import CheckpointManager
from chorus.train.fp32_norms import keep_fp32_statistics
from chorus.train.optim import build_optimizer, build_scheduler, reapply_hparams, rebase_lr
from chorus.train.precision import Precision
from chorus.train.preflight import Plan
from chorus.train.stats import StepStats, Window


WALL_PARTS = ("startup", "training", "evaluation", "diagnostics", "checkpoints", "test")


@dataclass
class Clock:
    """Wall time of one ``run`` call in parts (``summary.json`` ``wall_seconds``): start-up (everything
    before the first epoch: Accelerate, shards, model, resume, MLflow), training (the epochs' steps,
    mid-epoch checkpoints included), evaluation (validation), diagnostics, checkpoints (at epoch ends),
    test, and other (the rest: logging, hooks, results); the parts add up to ``total``."""

    t0: float = field(default_factory=time.perf_counter)
    parts: dict = field(default_factory=lambda: dict.fromkeys(WALL_PARTS, 0.0))

    @contextlib.contextmanager
    def part(self, name: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.parts[name] += time.perf_counter() - t

    def until_now(self, name: str) -> None:
        """Give ``name`` the time since the start not yet counted in any part."""
        self.parts[name] += max(0.0, time.perf_counter() - self.t0 - sum(self.parts.values()))

    def summary(self) -> dict:
        total = time.perf_counter() - self.t0
        out = dict(self.parts)
        out["other"] = max(0.0, total - sum(out.values()))
        return {**out, "total": total}

    @staticmethod
    def line(wall: dict) -> str:
        names = {"startup": "start-up"}
        parts = ", ".join(f"{names.get(k, k)} {v:.1f}" for k, v in wall.items() if k != "total")
        return f"[chorus] wall time {wall['total']:.1f} s: {parts}"


@dataclass
class Progress:
    """Where the run stands; ``state()`` is what a checkpoint records (``trainer_state.json``)."""

    epoch: int = 0                 # epochs done
    batch: int = 0                 # batches done in the current epoch
    step: int = 0                  # optimizer steps done
    samples: int = 0               # training samples seen (all processes)
    local_batches: int = 0         # micro-batches this process ran in this call
    train_time: float = 0.0
    last_ckpt: Optional[str] = None
    val: dict = field(default_factory=dict)
    history: list = field(default_factory=list)   # per-epoch metric dicts
    done: bool = False
    clock: Clock = field(default_factory=Clock)   # the loop gives it the one started with the run
    window: Window = field(default_factory=Window)   # the train/* averaging window: checkpointed
    metrics_mark: Optional[dict] = None   # where metrics.jsonl stood at the resumed checkpoint

    def state(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch, "step": self.step, "samples": self.samples,
                "window": self.window.state()}

    def restore(self, state: dict) -> None:
        """The counters and the log window of a checkpoint's ``state()``."""
        self.epoch, self.batch, self.step = state["epoch"], state["batch"], state["step"]
        self.samples = state.get("samples", 0)
        self.window = Window.restored(state.get("window"))
        self.metrics_mark = state.get("metrics_log")


@dataclass
class Run:
    recipe: Recipe
    acc: Any
    plan: Plan
    run_dir: str
    model: Any                     # prepared: DDP wrapper or DeepSpeed engine
    raw: nn.Module                 # the unwrapped model (evaluation, diagnostics, results)
    optimizer: Any
    scheduler: Any
    precision: Precision
    loss_fn: nn.Module
    ckpt: CheckpointManager
    in_dtype: Optional[torch.dtype]        # DeepSpeed bf16/fp16 casts the model: inputs follow
    alpha_layers: list
    deepspeed: bool
    tracker: Any = field(default_factory=NullTracker)
    lock: Optional[FolderLock] = None      # the run folder's (main process)
    stop: Any = None                       # chorus.train.interrupt.StopSignals while the run trains

    def close(self) -> None:
        """Release the run folder (the lock); the run's other parts go with the Accelerator."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    @property
    def main(self) -> bool:
        return self.acc.is_main_process

    def say(self, *text) -> None:
        if self.main:
            print(*text, file=sys.stderr, flush=True)

    def loader(self, split: str, *, train: bool = False, epoch: int = 0, start_batch: int = 0, all_data=False):
        """This process's loader of ``split`` (``all_data``: the whole split, for diagnostics)."""
        rank, world = (0, 1) if all_data else (self.acc.process_index, self.acc.num_processes)
        return components.make_loader(self.recipe, split, train=train, epoch=epoch, rank=rank, world_size=world,
                                      start_batch=start_batch, manifest=self.plan.manifest)

    def save_checkpoint(self, progress: Progress, val_acc: Optional[float] = None) -> str:
        """The one way a checkpoint is written (every process takes part); it records where metrics.jsonl
        stands, and MLflow then receives the metrics it covers (:class:`chorus.tracking.Tracker` ``hold``)."""
        state = {**progress.state(), "metrics_log": self.tracker.mark()}
        progress.last_ckpt = self.ckpt.save(state, self.model, self.recipe, val_acc=val_acc)
        self.tracker.flush()
        return progress.last_ckpt


def broadcast(acc, obj):
    if acc.num_processes == 1:
        return obj
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([obj])[0]


def place(recipe: Recipe, acc) -> tuple[str, Optional[str], Optional[FolderLock]]:
    """``(run_dir, checkpoint to resume, the run folder's lock)``, decided on the main process (run folder
    names carry a time stamp) and broadcast; a refusal there is raised on every process alike. The main
    process holds the folder's :class:`~chorus.folder_lock.FolderLock` (one writer per run folder, issue 19
    item 2): taken on ``train.out_dir`` before it is read, so a second ``chorus train --out D`` is refused
    naming the holder; other processes get ``None``."""
    answer, lock = None, None
    if acc.is_main_process:
        try:
            lock = _lock(recipe.train.out_dir) if recipe.train.resume in ("never", "auto") else None
            run_dir, resume_from = rundir.resolve(recipe)
            lock = lock or _lock(run_dir)
            if resume_from:
                resume_check.check_resume(recipe, resume_from)
            answer = (run_dir, resume_from)
        except FolderLockedError as e:   # its own arguments do not pickle: broadcast as a RecipeError
            answer = RecipeError(f"run folder {e}")
        except Exception as e:     # a RecipeError: every process raises it
            if lock is not None:
                lock.release()
            answer = e
    answer = broadcast(acc, answer)
    if isinstance(answer, Exception):
        raise answer
    return (*answer, lock)


def _lock(folder: Optional[str]) -> Optional[FolderLock]:
    """Lock run folder ``folder`` (made when missing); ``None`` for no folder or a path that is a file
    (:func:`chorus.train.rundir.resolve` names that error)."""
    if not folder or (os.path.exists(folder) and not os.path.isdir(folder)):
        return None
    folder = os.path.abspath(folder)
    os.makedirs(folder, exist_ok=True)
    return FolderLock(folder, purpose="chorus train").acquire()


def start(recipe: Recipe, acc, plan: Plan, loss_fn: nn.Module) -> tuple[Run, Progress]:
    """Make the run folder (the first thing written), prepare model and optimizer, and resume."""
    run_dir, resume_from, lock = place(recipe, acc)
    try:
        run, progress = _start(recipe, acc, plan, loss_fn, run_dir, resume_from)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    run.lock = lock
    return run, progress


def _start(recipe: Recipe, acc, plan: Plan, loss_fn: nn.Module, run_dir: str,
           resume_from: Optional[str]) -> tuple[Run, Progress]:
    if acc.is_main_process:
        os.makedirs(run_dir, exist_ok=True)
        save_recipe(recipe, os.path.join(run_dir, "recipe.yaml"))
    optimizer = build_optimizer(plan.model, recipe.optim)
    scheduler = build_scheduler(optimizer, recipe.schedule, plan.steps_per_epoch, plan.total_steps, recipe.optim.lr)
    deepspeed = setup.uses_deepspeed(acc)
    precision = Precision(recipe.train.precision, acc.device.type, deepspeed=deepspeed)
    model, optimizer = acc.prepare(plan.model, optimizer)
    setup.seed_rank(recipe.train.seed, acc.process_index)    # after the weights: they are the same everywhere
    acc.register_for_checkpointing(scheduler)
    if precision.scaler is not None:
        acc.register_for_checkpointing(precision.scaler)
    raw = acc.unwrap_model(model)
    in_dtype = setup.model_dtype(raw) if deepspeed else None
    if in_dtype is not None:
        keep_fp32_statistics(raw, in_dtype)        # BatchNorm statistics stay fp32 under DeepSpeed bf16/fp16
    from chorus.models import mps_layers

    ckpt = CheckpointManager(os.path.join(run_dir, "checkpoints"), acc, keep_last=recipe.train.keep_last)
    run = Run(recipe, acc, plan, run_dir, model, raw, optimizer, scheduler, precision, loss_fn, ckpt, in_dtype,
              mps_layers(raw), deepspeed)
    progress = Progress(last_ckpt=resume_from)
    if resume_from:
        resume(run, progress, resume_from)
    progress.done = progress.step >= plan.total_steps
    return run, progress


def resume(run: Run, progress: Progress, path: str) -> None:
    """Restore checkpoint ``path``; the recipe's optimizer settings win over the saved ones (PBT)."""
    progress.restore(run.ckpt.load(path))
    run.say(f"[chorus] resumed from {path} (epoch {progress.epoch + 1}, batch {progress.batch}, "
            f"step {progress.step})")
    changed = {("optim.mps.lr" if g == "mps" else "optim.lr"): v
               for g, v in (rebase_lr(run.optimizer, run.scheduler, run.recipe.optim) or {}).items()}
    for key, (old, new) in changed.items():
        run.say(f"[chorus] learning rate: {key}={new:g} replaces the checkpoint's {old:g}")
    for key, (old, new) in reapply_hparams(run.optimizer, run.recipe.optim).items():
        run.say(f"[chorus] optimizer {key}: the recipe's {new} replaces the checkpoint's {old}")


@contextlib.contextmanager
def tracked(run: Run, progress: Progress):
    """The run's MLflow record (main process): started here (a resumed run continues its MLflow run and
    its metrics.jsonl from the checkpoint's mark), ended FAILED -- KILLED on a stop signal or Ctrl+C --
    by any exception inside, which then propagates."""
    recipe, info = run.recipe, os.path.join(run.run_dir, "run.json")
    try:
        if run.main:
            tc = recipe.tracking
            run.tracker = Tracker(enabled=tc.enabled, uri=tc.uri, experiment=tc.experiment, local_dir=run.run_dir,
                                  artifacts=tc.artifacts)
            run.tracker.hold = True        # MLflow gets what a checkpoint covers (Progress, Run.save_checkpoint)
            old = {}
            if progress.last_ckpt is not None and os.path.isfile(info):
                with open(info) as f:
                    old = json.load(f)
            run.tracker.start(tc.run_name or recipe.name, flatten(to_dict(recipe)),
                              tags={"chorus.recipe": recipe.source or "", "chorus.run_dir": run.run_dir, **tc.tags},
                              parent_run_id=tc.parent_run_id, resume_run_id=old.get("mlflow_run_id"))
            run.tracker.resume_log(progress.metrics_mark)
            with open(info, "w") as f:
                json.dump({"mlflow_run_id": run.tracker.run_id, "tracking_uri": run.tracker.uri}, f)
            run.tracker.log_artifact(os.path.join(run.run_dir, "recipe.yaml"))
        yield run.tracker
    except BaseException as e:
        from chorus.train.interrupt import Interrupted

        run.tracker.flush()
        run.tracker.end("KILLED" if isinstance(e, (KeyboardInterrupt, Interrupted)) else "FAILED")
        raise
