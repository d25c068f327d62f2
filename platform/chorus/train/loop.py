"""The one training loop of Chorus: ``run(recipe, hooks=None) -> dict``.

Read top to bottom: set-up (Accelerate, data, model, optimizer, schedule, checkpoints, MLflow), then
epochs of explicit steps — forward over T timesteps, ensemble loss ``CE(mean_t o_t) + γ·TASG``
(DESIGN.md), backward, clip, step — with evaluation, checkpoints and logging at epoch end, and a final
test evaluation that prints the per-timestep table. Works in one process or under ``accelerate launch``
(DDP, DeepSpeed ZeRO); callable in-process (Ray Tune passes ``hooks``: ``on_epoch_end(epoch, metrics,
checkpoint_dir)`` and ``should_stop()``, on the main process; ``hooks.all_ranks = True`` calls
``on_epoch_end`` on every process).
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time

import torch
from tqdm import tqdm

from chorus.config import Recipe, RecipeError, flatten, save_recipe, to_dict
from chorus.losses import EnsembleLoss
from chorus.train import components, rundir, setup
from chorus.train.checkpoint import USE_FILES, CheckpointManager
from chorus.train.evaluate import alpha_values, evaluate, first_batches, run_diagnostics
from chorus.train.metrics import prefixed, timestep_table
from chorus.train.optim import build_optimizer, build_scheduler, reapply_hparams, rebase_lr
from chorus.tracking import NullTracker, Tracker


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or inf; the message names the step and the last good checkpoint."""


def run(recipe: Recipe, hooks=None) -> dict:
    """Train ``recipe``; returns a summary dict (run folder, MLflow run, val/test results, model)."""
    manifest = components.open_shards(recipe)          # bad paths fail before anything is written
    acc = setup.make_accelerator(recipe)
    try:
        return _train(recipe, manifest, acc, hooks)
    finally:
        setup.release(acc)


def _broadcast(acc, obj):
    if acc.num_processes == 1:
        return obj
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([obj])[0]


def _train(recipe: Recipe, manifest: dict, acc, hooks) -> dict:
    t, d = recipe.train, recipe.data
    main, rank, world = acc.is_main_process, acc.process_index, acc.num_processes
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if main else (lambda *a: None)

    # ---- run folder, resume point -----------------------------------------------------------------
    run_dir, resume_from = _broadcast(acc, rundir.resolve(recipe) if main else None)
    if main:
        os.makedirs(run_dir, exist_ok=True)
        save_recipe(recipe, os.path.join(run_dir, "recipe.yaml"))

    # ---- model, optimizer, schedule -----------------------------------------------------------------
    model = components.build_model(recipe, manifest)
    optimizer = build_optimizer(model, recipe.optim)
    n_batches = len(components.make_loader(recipe, "train", train=True, epoch=0, rank=rank, world_size=world))
    steps_per_epoch = n_batches // t.grad_accum
    if steps_per_epoch == 0:
        where = f" in {recipe.source}" if recipe.source else ""
        raise RecipeError(f"data.batch_size={d.batch_size} x train.grad_accum={t.grad_accum} x {world} processes "
                          f"leaves no full step in the {n_batches} training batches of {d.shards}{where}")
    used_batches = steps_per_epoch * t.grad_accum          # the remainder of an epoch is dropped
    total_steps = steps_per_epoch * t.epochs if t.max_steps is None else min(t.max_steps, steps_per_epoch * t.epochs)
    scheduler = build_scheduler(optimizer, recipe.schedule, steps_per_epoch, total_steps, recipe.optim.lr)
    deepspeed = setup.uses_deepspeed(acc)
    model, optimizer = acc.prepare(model, optimizer)
    acc.register_for_checkpointing(scheduler)
    raw = acc.unwrap_model(model)
    in_dtype = setup.model_dtype(raw) if deepspeed else None   # DeepSpeed bf16/fp16 casts the model itself
    if in_dtype is not None:
        setup.match_buffers(raw, in_dtype)
    from chorus.models import mps_layers

    alpha_layers = mps_layers(raw)
    loss_kwargs = components.loss_kwargs(recipe)
    loss_fn = EnsembleLoss(p_drop=recipe.loss.p_drop, **loss_kwargs).train()

    # ---- checkpoints and resume ---------------------------------------------------------------------
    ckpt = CheckpointManager(os.path.join(run_dir, "checkpoints"), acc, keep_last=t.keep_last)
    state = {"epoch": 0, "batch": 0, "step": 0, "samples": 0}
    if resume_from:
        state.update(ckpt.load(resume_from))
        say(f"[chorus] resumed from {resume_from} (epoch {state['epoch'] + 1}, batch {state['batch']}, "
            f"step {state['step']})")
        saved_lr = rebase_lr(optimizer, scheduler, recipe.optim.lr)   # chorus tune's PBT perturbs optim.lr
        if saved_lr is not None:
            say(f"[chorus] learning rate: optim.lr={recipe.optim.lr:g} replaces the checkpoint's {saved_lr:g}")
        for key, (old, new) in reapply_hparams(optimizer, recipe.optim).items():   # weight decay, momentum, betas, eps
            say(f"[chorus] optimizer {key}: the recipe's {new} replaces the checkpoint's {old}")

    # ---- tracking (main process only) -----------------------------------------------------------------
    tracker = NullTracker()
    try:
        if main:
            tc = recipe.tracking
            tracker = Tracker(enabled=tc.enabled, uri=tc.uri, experiment=tc.experiment, local_dir=run_dir)
            run_info = os.path.join(run_dir, "run.json")
            old = {}
            if resume_from and os.path.isfile(run_info):
                with open(run_info) as f:
                    old = json.load(f)
            tracker.start(tc.run_name or recipe.name, flatten(to_dict(recipe)),
                          tags={"chorus.recipe": recipe.source or "", "chorus.run_dir": run_dir, **tc.tags},
                          parent_run_id=tc.parent_run_id, resume_run_id=old.get("mlflow_run_id"))
            with open(run_info, "w") as f:
                json.dump({"mlflow_run_id": tracker.run_id, "tracking_uri": tracker.uri}, f)
            tracker.log_artifact(os.path.join(run_dir, "recipe.yaml"))

        step, samples = state["step"], state["samples"]
        local_batches, train_time, val, last_ckpt = 0, 0.0, {}, resume_from
        history: list[dict] = []
        stop = state["step"] >= total_steps
        for epoch in range(state["epoch"], t.epochs):
            if stop:
                break
            start = state["batch"] if (resume_from and epoch == state["epoch"]) else 0
            loader = components.make_loader(recipe, "train", train=True, epoch=epoch, rank=rank,
                                            world_size=world, start_batch=start)
            model.train()
            bar = tqdm(total=used_batches, initial=start, desc=f"epoch {epoch + 1}/{t.epochs}", unit="batch",
                       disable=not (main and t.progress), leave=True, file=sys.stderr, dynamic_ncols=True)
            # per-step statistics stay on the device; the host reads them once per optimizer step
            # (the non-finite check) and at the log interval -- never per micro-batch
            window = torch.zeros(5, dtype=torch.float64, device=acc.device)   # loss, ce, tasg, correct, samples
            pending = torch.zeros(6, dtype=torch.float64, device=acc.device)  # this step's 5 + non-finite batches
            t_log, b = time.perf_counter(), start
            epoch_t0 = time.perf_counter()
            for x, y in components.iterate(loader):
                if b >= used_batches:
                    break
                x = x.to(acc.device, dtype=in_dtype or x.dtype, non_blocking=True)
                y = y.to(acc.device, non_blocking=True)
                sync = (b + 1) % t.grad_accum == 0
                acc.sync_gradients = sync
                quiet = acc.no_sync(model) if (not sync and world > 1 and not deepspeed) else contextlib.nullcontext()
                with quiet:
                    with acc.autocast():
                        logits = model(x)                      # [T, B, classes]
                    parts = loss_fn(logits.float(), y)
                    with torch.no_grad():                      # device-side sums: no host sync here
                        loss = parts["loss"].detach()
                        pending[:3] += torch.stack([loss, parts["loss_ce"].detach(),
                                                    parts["loss_tasg"].detach()]).double() * y.shape[0]
                        pending[3] += (logits.detach().float().mean(0).argmax(-1) == y).sum()
                        pending[4] += y.shape[0]
                        pending[5] += (~torch.isfinite(loss)).double()
                    if sync:
                        # once per optimizer step, before the backward that steps (DeepSpeed steps inside it):
                        # sum over the processes, then stop every process together on a NaN/inf loss
                        if world > 1:
                            pending = acc.reduce(pending, reduction="sum")
                        step_stats = pending.tolist()          # the one device->host read of this step
                        if step_stats[5] > 0:
                            first = b + 2 - t.grad_accum       # the window's batches, 1-based
                            where = f"batch {b + 1}" if t.grad_accum == 1 else f"batches {first}-{b + 1}"
                            raise NonFiniteLoss(
                                f"non-finite loss ({step_stats[0] / max(step_stats[4], 1):.4g}) at step {step + 1} "
                                f"(epoch {epoch + 1}, {where}); training stopped. "
                                f"Last good checkpoint: {last_ckpt or 'none yet'}")
                    acc.backward(parts["loss"])
                b += 1
                local_batches += 1
                bar.update(1)
                if not sync:
                    continue
                window += pending[:5]
                samples += int(step_stats[4])
                pending.zero_()
                if t.grad_clip and not deepspeed:
                    acc.clip_grad_norm_(model.parameters(), t.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                if step % t.log_every == 0 or b == used_batches:
                    now = time.perf_counter()
                    w = window.tolist()                   # the one read of the window, at the log interval
                    n = max(w[4], 1.0)
                    rate = w[4] / max(now - t_log, 1e-9)
                    m = {"train/loss": w[0] / n, "train/loss_ce": w[1] / n, "train/loss_tasg": w[2] / n,
                         "train/acc": w[3] / n, "train/lr": scheduler.get_last_lr()[0], "train/samples_per_s": rate,
                         "train/epoch": epoch + b / used_batches}
                    tracker.log_metrics({k: float(v) for k, v in m.items()}, step)
                    bar.set_postfix(loss=f"{m['train/loss']:.3f}", acc=f"{m['train/acc']:.3f}", samples_s=f"{rate:.0f}")
                    window.zero_()
                    t_log = now
                if step >= total_steps:
                    stop = True
                    break
                if t.checkpoint_every and step % t.checkpoint_every == 0 and b < used_batches:
                    state = {"epoch": epoch, "batch": b, "step": step, "samples": samples}
                    last_ckpt = ckpt.save(state, model, recipe)
            bar.close()
            train_time += time.perf_counter() - epoch_t0

            # ---- epoch end: validation, α, diagnostics, checkpoint, hooks ------------------------------
            setup.sync_buffers(raw)
            val = {}
            if components.check_split(recipe, manifest, "val"):
                val_loader = components.make_loader(recipe, "val", train=False, rank=rank, world_size=world)
                val = evaluate(raw, val_loader, T=d.T, accelerator=acc, loss_kwargs=loss_kwargs, dtype=in_dtype)
            metrics = {**prefixed(val, "val"), **alpha_values(alpha_layers), "epoch": epoch + 1}
            metrics.pop("val/samples", None)
            dg = recipe.diagnostics
            if main and dg.every and ((epoch + 1) % dg.every == 0 or epoch + 1 == t.epochs) and val:
                batches = first_batches(components.make_loader(recipe, "val", train=False), dg.samples,
                                        time_first=manifest.get("kind") != "points")
                # the model's device and input dtype (DeepSpeed bf16/fp16 casts the weights themselves)
                batches = [(x.to(acc.device, dtype=in_dtype or x.dtype), y.to(acc.device)) for x, y in batches]
                metrics.update(run_diagnostics(raw, batches, loss_kwargs=loss_kwargs, layers=dg.layers,
                                               epoch=epoch + 1, tracker=tracker, step=step,
                                               history=history + [dict(metrics)]))
            tracker.log_metrics(metrics, step)
            history.append(metrics)
            if val:
                say(f"[chorus] epoch {epoch + 1}: val acc {100 * val['acc']:.2f}%  "
                    f"(first step {100 * val['acc_step_1']:.2f}%)  loss {val['loss']:.4f}")
            done = b >= used_batches                      # else: stopped mid-epoch by train.max_steps
            state = {"epoch": epoch + 1 if done else epoch, "batch": 0 if done else b, "step": step,
                     "samples": samples}
            last_ckpt = ckpt.save(state, model, recipe, val_acc=val.get("acc"))
            if hooks is not None and hasattr(hooks, "on_epoch_end") and (main or getattr(hooks, "all_ranks", False)):
                hooks.on_epoch_end(epoch, dict(metrics), last_ckpt)   # Ray Train's report wants every rank
            wants_stop = bool(main and hooks is not None and hasattr(hooks, "should_stop") and hooks.should_stop())
            if _broadcast(acc, wants_stop):
                say(f"[chorus] stopped after epoch {epoch + 1} (hooks.should_stop)")
                stop = True

        # ---- the end: test evaluation, table, artifacts --------------------------------------------------
        return _finish(recipe, manifest, acc, raw, tracker, ckpt, run_dir, dict(
            val=val, history=history, step=step, samples=samples, local_batches=local_batches,
            train_time=train_time, loss_kwargs=loss_kwargs, in_dtype=in_dtype, last_ckpt=last_ckpt), say)
    except BaseException:
        # any failure after the MLflow run started (the loop, test evaluation, artifact upload) ends it
        tracker.end("FAILED" if not isinstance(sys.exc_info()[1], KeyboardInterrupt) else "KILLED")
        raise


def _finish(recipe, manifest, acc, raw, tracker, ckpt, run_dir, r: dict, say) -> dict:
    d = recipe.data
    test = {}
    if recipe.train.eval_test and components.check_split(recipe, manifest, "test"):
        loader = components.make_loader(recipe, "test", train=False, rank=acc.process_index,
                                        world_size=acc.num_processes)
        test = evaluate(raw, loader, T=d.T, accelerator=acc, loss_kwargs=r["loss_kwargs"], dtype=r["in_dtype"])
    final, split = (test, "test") if test else (r["val"], "val")
    table = timestep_table(final, f"{recipe.name}: {split} accuracy per timestep (T = {d.T})") if final else ""
    rate = (r["samples"] / r["train_time"]) if r["train_time"] > 0 else 0.0
    summary = {"run_dir": run_dir, "mlflow_run_id": tracker.run_id, "tracking_uri": tracker.uri,
               "steps": r["step"], "samples": r["samples"], "train_seconds": r["train_time"],
               "samples_per_s": rate, "val": r["val"], "test": test, "table": table,
               "last_checkpoint": r["last_ckpt"], "best_checkpoint": ckpt.best_path(),
               "best_val_acc": (ckpt.best or {}).get("val_acc")}
    if acc.is_main_process:
        if test:
            tracker.log_metrics({k: v for k, v in prefixed(test, "test").items() if k != "test/samples"}, r["step"])
        tracker.log_metrics({"perf/samples_per_s": rate}, r["step"])
        with open(os.path.join(run_dir, "summary.json"), "w") as f:
            json.dump({k: v for k, v in summary.items()}, f, indent=1, default=str)
        if table:
            tracker.log_text(table + "\n", "per_timestep.md")
            tracker.log_text(json.dumps(final, indent=1), "per_timestep.json")
        tracker.log_artifact(os.path.join(run_dir, "summary.json"))
        if recipe.tracking.log_checkpoint and ckpt.best_path():
            # what it takes to use the model (chorus eval / report), not the training state to resume it
            for name in USE_FILES:
                tracker.log_artifact(os.path.join(ckpt.best_path(), name), "checkpoints/best")
        tracker.end("FINISHED")
        summary["location"] = tracker.location()
        if table:
            say("\n" + table)
        say(f"[chorus] run folder: {run_dir}\n[chorus] {summary['location']}")
    summary["distributed_type"] = str(acc.distributed_type).split(".")[-1]
    summary["num_processes"] = acc.num_processes
    summary["history"] = r["history"]
    summary["batches_this_rank"] = r["local_batches"]
    summary["model"] = raw
    return summary
