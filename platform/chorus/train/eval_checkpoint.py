"""Evaluate a saved checkpoint, also at a number of timesteps K other than the training T (``chorus eval``).

The ensemble view (docs/method.md, "Recipes and runs") predicts that a model trained at T can run for
any K steps. "Run for K steps" has two meanings, chosen by ``time_mode``:

- ``rebin`` (the default): bin the same events into K frames, so each frame holds about T/K of the
  events a training frame held (point clouds: the cloud is shown K times).
- ``extend-last``: the T frames the model was trained on, then the last frame again for steps T+1..K.
- ``extend-loop``: the T frames, then the sequence again from its start: frame ((t − 1) mod T) + 1 at step t.

Both ``extend`` modes need K ≥ T (fewer steps over the same frames is ``acc_first_k`` of the plain
table). With K = T every mode is the plain evaluation. Point clouds have no frames: every step sees the
same cloud, so the three modes coincide there.
"""
from __future__ import annotations

import json
import os

import torch

from chorus.config import load_recipe
from chorus.losses import ensemble_loss
from chorus.models.introspect import eval_mode
from chorus.train import components
from chorus.train.checkpoint import BEST_FILE, MODEL_FILE, RECIPE_FILE, latest_checkpoint, load_model_weights
from chorus.train.metrics import TimestepAccuracy, timestep_table

TIME_MODES = {
    "rebin": "re-bin: the same events binned into K frames",
    "extend-last": "extend: the training T frames, then the last frame repeated up to K steps",
    "extend-loop": "extend: the training T frames, looped until K steps",
}
DEFAULT_TIME_MODE = "rebin"


def find_checkpoint(path: str) -> str:
    """A checkpoint folder, or a run folder (its best checkpoint, else its latest)."""
    if os.path.isfile(os.path.join(path, MODEL_FILE)):
        return path
    root = os.path.join(path, "checkpoints") if os.path.isdir(os.path.join(path, "checkpoints")) else path
    best = os.path.join(root, BEST_FILE)
    if os.path.isfile(best):
        with open(best) as f:
            cand = os.path.join(root, json.load(f)["name"])
        if os.path.isdir(cand):
            return cand
    latest = latest_checkpoint(root)
    if latest is None:
        raise FileNotFoundError(f"{path}: no checkpoint here (expected {MODEL_FILE} and {RECIPE_FILE}, "
                                f"or a run folder with checkpoints/)")
    return latest


def check_timesteps(timesteps, time_mode: str, trained_T: int | None = None) -> None:
    """``timesteps`` is None or an int ≥ 1, ``time_mode`` is known, and an extend mode has K ≥ T."""
    if time_mode not in TIME_MODES:
        raise ValueError(f"time mode {time_mode!r} is not known; choose one of {', '.join(TIME_MODES)}")
    if timesteps is None:
        return
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1:
        raise ValueError(f"--timesteps {timesteps!r}: the number of timesteps must be a whole number ≥ 1")
    if trained_T is not None and time_mode != "rebin" and timesteps < trained_T:
        raise ValueError(f"--timesteps {timesteps} with --time-mode {time_mode}: extending needs K ≥ the "
                         f"training T = {trained_T} (fewer steps over the same frames is the table's "
                         f"'first k' row; re-binning into fewer frames is --time-mode rebin)")


def extend_frames(x: torch.Tensor, K: int, time_mode: str) -> torch.Tensor:
    """Time-first frames ``[T, B, ...]`` → ``[K, B, ...]`` by ``time_mode`` (``extend-last`` or
    ``extend-loop``; ``rebin`` and K = T return ``x`` itself)."""
    T = x.shape[0]
    if time_mode == "rebin" or K == T:
        return x
    if K < T:
        raise ValueError(f"cannot extend {T} frames to {K} < {T} steps")
    if time_mode == "extend-last":
        idx = torch.clamp(torch.arange(K), max=T - 1)
    else:
        idx = torch.arange(K) % T
    return x.index_select(0, idx.to(x.device))


def run_split(model, loader, *, K: int, time_mode: str, loss_kwargs: dict, time_first: bool = True,
              keep_logits: bool = False):
    """The per-timestep metrics of ``model`` over ``loader`` run for K steps; with ``keep_logits``
    also the logits ``[K, N, C]`` and labels ``[N]`` of every sample (for early exit)."""
    meter = TimestepAccuracy(K)
    lk = dict(loss_kwargs, p_drop=0.0)
    device = next(model.parameters()).device
    kept, labels = [], []
    with torch.no_grad(), eval_mode(model):
        for x, y in components.iterate(loader):
            if y.numel() == 0:
                continue
            x = x.to(device)
            if time_first:
                x = extend_frames(x, K, time_mode)
            logits = model(x)
            meter.update(logits, y, ensemble_loss(logits.float(), y.to(device), **lk)["loss"])
            if keep_logits:
                kept.append(logits.detach().float().cpu())
                labels.append(y.detach().cpu())
    if not keep_logits:
        return meter.result(), None, None
    return meter.result(), torch.cat(kept, 1), torch.cat(labels)


def load_for_eval(path: str, timesteps: int | None, time_mode: str, shards: str | None = None,
                  batch_size: int | None = None, split: str = "test"):
    """``(checkpoint, recipe, manifest, model, loader, K, time_first)`` ready for :func:`run_split`."""
    check_timesteps(timesteps, time_mode)
    ck = find_checkpoint(path)
    overrides = []
    if shards:      # quoted: a path with "#" or one that reads as a number stays the path
        overrides.append(f"data.shards={json.dumps(shards)}")
    if batch_size:
        overrides.append(f"data.eval_batch_size={json.dumps(batch_size)}")
    recipe = load_recipe(os.path.join(ck, RECIPE_FILE), overrides)
    T = recipe.data.T
    check_timesteps(timesteps, time_mode, T)
    K = timesteps or T
    manifest = components.open_shards(recipe)
    if not components.check_split(recipe, manifest, split):
        raise ValueError(f"{recipe.data.shards}: no samples in split {split!r}")
    model = components.build_model(recipe, manifest, T=K)
    model.load_state_dict(load_model_weights(ck))
    if hasattr(model, "timesteps"):
        model.timesteps = K
    time_first = manifest.get("kind") != "points"
    frames_T = K if (time_mode == "rebin" or not time_first) else T
    loader = components.make_loader(recipe, split, train=False, T=frames_T, manifest=manifest)
    return ck, recipe, manifest, model, loader, K, time_first


def evaluate_checkpoint(path: str, timesteps: int | None = None, split: str = "test", shards: str | None = None,
                        batch_size: int | None = None, time_mode: str = DEFAULT_TIME_MODE,
                        keep_logits: bool = False, probe=None) -> dict:
    """Per-timestep accuracies of the model saved at ``path`` on ``split`` run for ``timesteps`` steps
    (default: the training T) in ``time_mode`` (module docstring). Returns the result dict with
    ``table`` (Markdown), ``checkpoint``, ``timesteps``, ``trained_timesteps``, ``time_mode`` and
    ``time_mode_meaning``; with ``keep_logits`` also ``logits`` [K, N, C] and ``labels`` [N] (tensors).
    ``probe`` (e.g. :class:`chorus.train.step_energy.StepEnergy`) is attached to the model for the pass:
    ``probe.attach(model, K, time_first)`` before, ``probe.detach()`` after."""
    ck, recipe, manifest, model, loader, K, time_first = load_for_eval(path, timesteps, time_mode, shards,
                                                                       batch_size, split)
    if probe is not None:
        probe.attach(model, K, time_first)
    try:
        result, logits, labels = run_split(model, loader, K=K, time_mode=time_mode, time_first=time_first,
                                           loss_kwargs=components.loss_kwargs(recipe), keep_logits=keep_logits)
    finally:
        if probe is not None:
            probe.detach()
    T = recipe.data.T
    meaning = TIME_MODES[time_mode] if K != T else "the training T (every time mode is the same here)"
    if not time_first and K != T:
        meaning += " (point clouds: every step sees the same cloud, so all time modes coincide)"
    result["table"] = timestep_table(result, f"{recipe.name} ({os.path.basename(ck)}): {split} accuracy per "
                                             f"timestep, T = {K} (trained at T = {T}); time mode "
                                             f"{time_mode}: {meaning}")
    result.update(checkpoint=ck, timesteps=K, trained_timesteps=T, time_mode=time_mode,
                  time_mode_meaning=meaning, split=split)
    if keep_logits:
        result.update(logits=logits, labels=labels)
    return result
