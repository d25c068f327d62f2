"""The one training loop of Chorus, as a recipe read top to bottom: ``run(recipe, hooks=None) -> dict``.

1. check everything that can be refused before anything is written (:mod:`chorus.train.preflight`);
2. set up the run (:mod:`chorus.train.session`: run folder, prepared model, resume, MLflow);
3. epochs of :func:`train_step` -- forward over T timesteps, the ensemble loss ``CE(mean_t o_t) + γ·TASG``
   (docs/method.md, "The spiking core"), backward, and on the last micro-batch of each accumulation window
   clip and step -- then :func:`end_epoch`: validation, α, diagnostics, checkpoint, hooks;
4. :func:`finish`: test evaluation, the per-timestep table, summary and artifacts.

Works in one process or under ``accelerate launch`` (DDP, DeepSpeed ZeRO); ``hooks`` follow
:class:`chorus.train.hooks.TrainHooks` (``chorus tune`` reports to Ray through them).
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Optional

from tqdm import tqdm

from chorus.config import Recipe
from chorus.losses import EnsembleLoss
from chorus.train import components, interrupt, session, setup, zero3
from chorus.train.checkpoint import USE_FILES, checkpoint_name
from chorus.train.evaluate import alpha_values, evaluate, first_batches, run_diagnostics
from chorus.train.hooks import TrainHooks, as_hooks
from chorus.train.interrupt import StopSignals
from chorus.train.metrics import prefixed, timestep_table
from chorus.train.preflight import make_plan
from chorus.train.session import Progress, Run
from chorus.train.stats import DeviceSums, StepStats


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or inf; the message names the step and the last good checkpoint."""


def run(recipe: Recipe, hooks: Optional[TrainHooks] = None) -> dict:
    """Train ``recipe``; returns a summary dict (run folder, MLflow run, val/test results, model)."""
    hooks = as_hooks(hooks)
    clock = session.Clock()                            # summary.json's wall_seconds
    manifest = components.open_shards(recipe)          # bad paths fail before anything is made
    acc = setup.make_accelerator(recipe)
    r = None
    try:
        plan = make_plan(recipe, manifest, acc.process_index, acc.num_processes)
        loss_fn = EnsembleLoss(p_drop=recipe.loss.p_drop, **components.loss_kwargs(recipe)).train()
        r, progress = session.start(recipe, acc, plan, loss_fn)
        progress.clock = clock
        with session.tracked(r, progress), StopSignals() as r.stop:
            clock.until_now("startup")
            while not progress.done and progress.epoch < recipe.train.epochs:
                with clock.part("training"):
                    train_epoch(r, progress)
                end_epoch(r, progress, hooks)
                if signum := interrupt.agree(acc, r.stop):   # a signal during the epoch's end (one reduce)
                    raise stopped(r, progress, signum)
            return finish(r, progress)
    finally:
        if r is not None:
            r.close()
        setup.release(acc)


def train_epoch(r: Run, p: Progress) -> None:
    """The optimizer steps of epoch ``p.epoch`` from batch ``p.batch`` (non-zero after a resume)."""
    t, used = r.recipe.train, r.plan.used_batches
    loader = r.loader("train", train=True, epoch=p.epoch, start_batch=p.batch)
    r.model.train()
    bar = tqdm(total=used, initial=p.batch, desc=f"epoch {p.epoch + 1}/{t.epochs}", unit="batch", leave=True,
               disable=not (r.main and t.progress), file=sys.stderr, dynamic_ncols=True)
    sums, t0 = DeviceSums(r.acc.device), time.perf_counter()
    window = p.window                              # restored by a resume: the averages match an unbroken run
    for x, y in components.iterate(loader):
        if p.batch >= used:
            break
        stats = train_step(r, sums, x, y, p)
        p.batch, p.local_batches = p.batch + 1, p.local_batches + 1
        bar.update(1)
        if stats is None:                          # inside an accumulation window
            continue
        p.step, p.samples = p.step + 1, p.samples + int(stats.samples)
        window.stats += stats
        if p.step % t.log_every == 0 or p.batch == used:
            m = window.metrics(r.scheduler.get_last_lr()[0], p.epoch + p.batch / used)
            r.tracker.log_metrics(m, p.step)
            bar.set_postfix(loss=f"{m['train/loss']:.3f}", acc=f"{m['train/acc']:.3f}",
                            samples_s=f"{m['train/samples_per_s']:.0f}")
        if p.step >= r.plan.total_steps:
            p.done = True
            break
        if t.checkpoint_every and p.step % t.checkpoint_every == 0 and p.batch < used:
            r.save_checkpoint(p)                   # a safe point: between optimizer steps
        signum = interrupt.agreed(stats.sigint, stats.sigterm)   # reduced with the step's statistics
        if signum:
            bar.close()
            raise stopped(r, p, signum)
    bar.close()
    p.train_time += time.perf_counter() - t0


def train_step(r: Run, sums: DeviceSums, x, y, p: Progress) -> Optional[StepStats]:
    """One micro-batch; on the last of an accumulation window, the optimizer step. Returns the step's
    statistics (read from the device once, summed over processes) after a step, else None."""
    acc, t = r.acc, r.recipe.train
    x = x.to(acc.device, dtype=r.in_dtype or x.dtype, non_blocking=True)
    y = y.to(acc.device, non_blocking=True)
    with acc.accumulate(r.model):                  # no gradient all-reduce inside the window
        with r.precision.autocast():
            logits = r.model(x)                    # [T, B, classes]
        parts = r.loss_fn(logits.float(), y)
        sums.add(parts, logits, y)
        # once per optimizer step, before the backward that steps (DeepSpeed steps inside it):
        # every process stops together on a NaN/inf loss
        stats = sums.read(acc, r.stop.flags()) if acc.sync_gradients else None
        if stats is not None and stats.nonfinite:
            raise _non_finite(stats, p, t.grad_accum, r.ckpt.last_good())
        acc.backward(r.precision.scale(parts["loss"]))
    if stats is None:
        return None
    if t.grad_clip and not r.deepspeed:              # DeepSpeed clips inside its step
        r.precision.unscale(r.optimizer)
        acc.clip_grad_norm_(r.model.parameters(), t.grad_clip)
    r.precision.step(r.optimizer)
    r.scheduler.step()
    r.optimizer.zero_grad(set_to_none=True)
    return stats


def _non_finite(stats: StepStats, p: Progress, grad_accum: int, good: Optional[str]) -> NonFiniteLoss:
    """The stop's message names the newest checkpoint whose parameters and buffers are all finite (a
    checkpoint saved while BatchNorm statistics were already inf is not one), or says there is none."""
    where = f"batch {p.batch + 1}" if grad_accum == 1 else f"batches {p.batch + 2 - grad_accum}-{p.batch + 1}"
    return NonFiniteLoss(f"non-finite loss ({stats.loss / max(stats.samples, 1):.4g}) at step {p.step + 1} "
                         f"(epoch {p.epoch + 1}, {where}); training stopped. "
                         f"Last good checkpoint (finite parameters and buffers): "
                         f"{good or 'none (no checkpoint of this run has finite parameters and buffers)'}")


def stopped(r: Run, p: Progress, signum: int) -> interrupt.Interrupted:
    """A stop signal at a safe point: the checkpoint to resume from (written now unless this step has
    one), then :class:`~chorus.train.interrupt.Interrupted` (every process raises it)."""
    ckpt = p.last_ckpt
    if not (ckpt and os.path.basename(ckpt) == checkpoint_name(p.step) and os.path.isdir(ckpt)):
        ckpt = r.save_checkpoint(p)
    return interrupt.Interrupted(signum, p.step, ckpt, r.run_dir, main=r.main)


def end_epoch(r: Run, p: Progress, hooks: TrainHooks) -> None:
    """Validation, α and diagnostics of the epoch just trained, its checkpoint, then the hooks."""
    epoch, finished = p.epoch, p.batch >= r.plan.used_batches   # else: stopped mid-epoch by max_steps
    setup.sync_buffers(r.raw)
    with p.clock.part("evaluation"):
        p.val = evaluate_split(r, "val")
    metrics = {**prefixed(p.val, "val"), **alpha_values(r.alpha_layers, r.acc), "epoch": epoch + 1}
    metrics.pop("val/samples", None)
    if diagnostics_due(r, epoch + 1):
        with p.clock.part("diagnostics"):
            metrics.update(diagnostics(r, p, metrics))
    r.tracker.log_metrics(metrics, p.step)
    p.history.append(metrics)
    if p.val:
        r.say(f"[chorus] epoch {epoch + 1}: val acc {100 * p.val['acc']:.2f}%  "
              f"(first step {100 * p.val['acc_step_1']:.2f}%)  loss {p.val['loss']:.4f}")
    if finished:
        p.epoch, p.batch = epoch + 1, 0
    with p.clock.part("checkpoints"):
        r.save_checkpoint(p, val_acc=p.val.get("acc"))
    if r.main or hooks.all_ranks:                  # Ray Train's report wants every rank
        hooks.on_epoch_end(epoch, dict(metrics), p.last_ckpt)
    if session.broadcast(r.acc, bool(r.main and hooks.should_stop())):
        r.say(f"[chorus] stopped after epoch {epoch + 1} (hooks.should_stop)")
        p.done = True


def evaluate_split(r: Run, split: str) -> dict:
    """Per-timestep accuracies and loss on ``split`` over all processes ({} when the split is empty)."""
    if not components.check_split(r.recipe, r.plan.manifest, split):
        return {}
    with r.precision.autocast():
        return evaluate(r.raw, r.loader(split), T=r.recipe.data.T, accelerator=r.acc,
                        loss_kwargs=components.loss_kwargs(r.recipe), dtype=r.in_dtype)


def diagnostics_due(r: Run, epochs_done: int) -> bool:
    """Diagnostics after this epoch? On the main process only, except under ZeRO-3, where every rank
    runs them on the same batches (a forward gathers parameters with every rank: chorus.train.zero3)."""
    every = r.recipe.diagnostics.every
    here = r.main or zero3.is_zero3(r.acc)
    return bool(here and every and (epochs_done % every == 0 or epochs_done == r.recipe.train.epochs))


def diagnostics(r: Run, p: Progress, metrics: dict) -> dict:
    """``chorus.diagnostics`` on the first ``diagnostics.samples`` validation samples (the main process;
    under ZeRO-3 every rank, the main one logging)."""
    dg, acc = r.recipe.diagnostics, r.acc
    if not p.val:
        return {}
    batches = first_batches(r.loader("val", all_data=True), dg.samples,
                            time_first=r.plan.manifest.get("kind") != "points")
    batches = [(x.to(acc.device, dtype=r.in_dtype or x.dtype), y.to(acc.device)) for x, y in batches]
    with r.precision.autocast():
        return run_diagnostics(r.raw, batches, loss_kwargs=components.loss_kwargs(r.recipe), layers=dg.layers,
                               epoch=metrics["epoch"], tracker=r.tracker, step=p.step,
                               history=p.history + [dict(metrics)], render=r.main,
                               alpha={k[len("mps/alpha/"):]: v for k, v in metrics.items() if k.startswith("mps/alpha/")})


def finish(r: Run, p: Progress) -> dict:
    """Test evaluation, the per-timestep table, ``summary.json`` (with ``wall_seconds``: the run's wall
    time in parts, :class:`chorus.train.session.Clock`) and the artifacts (MLflow and the run folder)."""
    recipe, T = r.recipe, r.recipe.data.T
    with p.clock.part("test"):
        test = evaluate_split(r, "test") if recipe.train.eval_test else {}
    final, split = (test, "test") if test else (p.val, "val")
    table = timestep_table(final, f"{recipe.name}: {split} accuracy per timestep (T = {T})") if final else ""
    rate = p.samples / p.train_time if p.train_time > 0 else 0.0
    summary = {"run_dir": r.run_dir, "mlflow_run_id": r.tracker.run_id, "tracking_uri": r.tracker.uri,
               "steps": p.step, "samples": p.samples, "train_seconds": p.train_time, "samples_per_s": rate,
               "val": p.val, "test": test, "table": table, "last_checkpoint": p.last_ckpt,
               "best_checkpoint": r.ckpt.best_path(), "best_val_acc": (r.ckpt.best or {}).get("val_acc")}
    if r.main:
        record(r, summary, test, final, p.clock)
        summary["location"] = r.tracker.location()
        if table:
            r.say("\n" + table)
        r.say(session.Clock.line(summary["wall_seconds"]))
        r.say(f"[chorus] run folder: {r.run_dir}\n[chorus] {summary['location']}")
    else:
        summary["wall_seconds"] = p.clock.summary()
    summary.update(distributed_type=str(r.acc.distributed_type).split(".")[-1], num_processes=r.acc.num_processes,
                   history=p.history, batches_this_rank=p.local_batches, model=r.raw)
    return summary


def record(r: Run, summary: dict, test: dict, final: dict, clock: session.Clock) -> None:
    """The end of the run (main process): test metrics, table, best checkpoint, then ``summary.json``
    with the wall time up to writing it; MLflow gets them as artifacts, the run folder holds them."""
    tracker, step = r.tracker, summary["steps"]
    if test:
        tracker.log_metrics({k: v for k, v in prefixed(test, "test").items() if k != "test/samples"}, step)
    tracker.log_metrics({"perf/samples_per_s": summary["samples_per_s"]}, step)
    if summary["table"]:
        tracker.log_text(summary["table"] + "\n", "per_timestep.md")
        tracker.log_text(json.dumps(final, indent=1), "per_timestep.json")
    if r.recipe.tracking.log_checkpoint and r.ckpt.best_path():
        # what it takes to use the model (chorus eval / report), not the training state to resume it
        for name in USE_FILES:
            tracker.log_artifact(os.path.join(r.ckpt.best_path(), name), "checkpoints/best")
    summary["wall_seconds"] = clock.summary()
    path = os.path.join(r.run_dir, "summary.json")
    with open(path, "w") as f:
        json.dump(summary, f, indent=1, default=str)
    tracker.log_artifact(path)
    tracker.end("FINISHED")
