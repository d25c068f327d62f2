"""Evaluation of a model on one split: the per-timestep table (``chorus.train.metrics``), MPS α values,
and the diagnostics hook (docs/architecture.md, "Diagnostics").

Runs the unwrapped model (no DDP collectives in forward), each process on its share of the split;
counts are summed over processes once at the end. Under DeepSpeed ZeRO-3 a forward is a collective:
every rank runs as many forwards as the rank with the most batches (:mod:`chorus.train.zero3`). The caller chooses the precision (the loop wraps
the call in its ``Precision.autocast``).
"""
from __future__ import annotations

import os
import tempfile

import torch

from chorus.losses import ensemble_loss
from chorus.models.introspect import eval_mode
from chorus.train.components import iterate
from chorus.train.metrics import TimestepAccuracy
from chorus.train.master_copy import master_values
from chorus.train.zero3 import is_zero3, lockstep


@torch.no_grad()
def evaluate(model, loader, *, T: int, accelerator=None, loss_kwargs: dict | None = None,
             dtype: torch.dtype | None = None) -> dict[str, float]:
    """Per-timestep accuracies and loss of ``model`` over ``loader`` (all processes together)."""
    with eval_mode(model):
        return _evaluate(model, loader, T=T, accelerator=accelerator, loss_kwargs=loss_kwargs, dtype=dtype)


def _evaluate(model, loader, *, T, accelerator, loss_kwargs, dtype) -> dict[str, float]:
    device = accelerator.device if accelerator is not None else next(model.parameters()).device
    meter = TimestepAccuracy(T)
    lk = dict(loss_kwargs or {})
    lk["p_drop"] = 0.0
    for x, y, real in lockstep(iterate(loader), accelerator):   # ZeRO-3: padding keeps ranks in step
        if not real and not is_zero3(accelerator):
            continue
        x = x.to(device, dtype=dtype or x.dtype, non_blocking=True)
        y = y.to(device)
        logits = model(x)
        if real:
            meter.update(logits, y, ensemble_loss(logits.float(), y, **lk)["loss"])
    meter.reduce(accelerator)
    return meter.result()


def alpha_values(layers, accelerator=None) -> dict[str, float]:
    """``mps/alpha/{layer}`` for every MPS layer, from β as the optimizer holds it (DeepSpeed's fp32 master
    copy under bf16/fp16: :mod:`chorus.train.master_copy`; every rank calls it together)."""
    betas = master_values([lif.beta for _, lif in layers], accelerator)
    return {f"mps/alpha/{name}": float(torch.sigmoid(beta).reshape(-1)[0]) for (name, _), beta in zip(layers, betas)}


def first_batches(loader, samples: int, time_first: bool = True) -> list:
    """The first ``samples`` samples of ``loader`` as a list of ``(x, y)`` batches (``time_first``:
    ``x`` is ``[T, B, ...]``; points are ``[B, N, 3]``)."""
    out, n = [], 0
    for x, y in loader:
        if n >= samples:
            break
        take = min(y.shape[0], samples - n)
        if take < y.shape[0]:
            x = x.narrow(1 if time_first else 0, 0, take)
            y = y[:take]
        out.append((x, y))
        n += take
    return out


def run_diagnostics(model, batches, *, loss_kwargs: dict, layers, epoch: int, tracker, step: int,
                    history: list | None = None, alpha: dict | None = None, render: bool = True) -> dict:
    """Call ``chorus.diagnostics.collect`` if that module exists; log its figures and tables under
    ``diagnostics/epoch_{epoch:03d}/``. Returns the metrics ({} when absent), which the loop logs at
    ``step`` with the rest of the epoch's metrics (logging them here too recorded every value twice).
    ``alpha`` (α per layer, read by the caller) and ``render`` (draw figures) pass to ``collect``."""
    try:
        from chorus import diagnostics
    except ImportError:
        return {}
    with eval_mode(model):
        d = diagnostics.collect(model, batches, loss_fn=lambda logits, y: ensemble_loss(logits.float(), y, **loss_kwargs),
                                layers=layers, history=history, alpha=alpha, render=render)
    folder = f"diagnostics/epoch_{epoch:03d}"
    with tempfile.TemporaryDirectory() as tmp:
        for name, png in (d.figures or {}).items():
            fname = name if name.endswith(".png") else f"{name}.png"
            with open(os.path.join(tmp, fname), "wb") as f:
                f.write(png)
        for name, text in (d.tables or {}).items():
            fname = name if "." in name else f"{name}.md"
            with open(os.path.join(tmp, fname), "w") as f:
                f.write(text)
        if os.listdir(tmp):
            tracker.log_artifact(tmp, folder)
    return dict(d.metrics)
