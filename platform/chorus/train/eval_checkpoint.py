"""Evaluate a saved checkpoint, also at a T other than the training T (``chorus eval``).

The ensemble view predicts that a model trained at T can run at any K (its first K subnetworks);
``timesteps=K`` bins the events into K frames (or repeats points K times) and reports the same
per-timestep table as training.
"""
from __future__ import annotations

import json
import os

import torch

from chorus.config import load_recipe
from chorus.train import components
from chorus.train.checkpoint import BEST_FILE, MODEL_FILE, RECIPE_FILE, latest_checkpoint, load_model_weights
from chorus.train.evaluate import evaluate
from chorus.train.metrics import timestep_table


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


def evaluate_checkpoint(path: str, timesteps: int | None = None, split: str = "test", shards: str | None = None,
                        batch_size: int | None = None) -> dict:
    """Per-timestep accuracies of the model saved at ``path`` on ``split``; returns the result dict
    with ``table`` (Markdown) and ``checkpoint``."""
    ck = find_checkpoint(path)
    overrides = []
    if shards:      # quoted: a path with "#" or one that reads as a number stays the path
        overrides.append(f"data.shards={json.dumps(shards)}")
    if batch_size:
        overrides.append(f"data.eval_batch_size={json.dumps(batch_size)}")
    recipe = load_recipe(os.path.join(ck, RECIPE_FILE), overrides)
    T = timesteps or recipe.data.T
    manifest = components.open_shards(recipe)
    if not components.check_split(recipe, manifest, split):
        raise ValueError(f"{recipe.data.shards}: no samples in split {split!r}")
    model = components.build_model(recipe, manifest, T=T)
    model.load_state_dict(load_model_weights(ck))
    if hasattr(model, "timesteps"):
        model.timesteps = T
    loss_kwargs = components.loss_kwargs(recipe)      # the training loop's, label smoothing included
    loader = components.make_loader(recipe, split, train=False, T=T)
    with torch.no_grad():
        result = evaluate(model, loader, T=T, loss_kwargs=loss_kwargs)
    result["table"] = timestep_table(result, f"{recipe.name} ({os.path.basename(ck)}): {split} accuracy per "
                                             f"timestep, T = {T} (trained at T = {recipe.data.T})")
    result["checkpoint"] = ck
    return result
