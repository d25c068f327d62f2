"""A resume continues the run its checkpoint belongs to: the resumed recipe must equal the checkpoint's
(``recipe.yaml`` in it), except for keys that are safe to change (:data:`SAFE`) and those the recipe
lists in ``train.resume_changes``; anything else (``model.args.width``, ``neuron.mps``, ...) is refused
before anything is written, naming every differing key (issue 18, item 6)."""
from __future__ import annotations

import os

from chorus.config import Recipe, RecipeError, recipe_from_dict, to_dict
from chorus.config.yaml_io import yaml_load

# Safe to change on resume: length and bookkeeping of the run, what is re-applied to the optimizer on
# resume (chorus.train.optim.rebase_lr / reapply_hparams: PBT perturbs optim.lr, optim.mps.lr), evaluation-only and
# reader-thread settings, and where and how the run is recorded.
SAFE = ("name", "description", "train.epochs", "train.max_steps", "train.out_dir", "train.resume",
        "train.resume_changes", "train.keep_last", "train.checkpoint_every", "train.log_every", "train.progress",
        "train.eval_test", "optim.lr", "optim.momentum", "optim.nesterov", "optim.weight_decay", "optim.betas",
        "optim.eps", "optim.mps", "data.workers", "data.eval_batch_size", "tracking.*", "diagnostics.*")


def _keys(d: dict) -> dict:
    """Section-level keys: ``{"train.epochs": 3, "model.args": {...}}`` (dict values stay whole)."""
    return {f"{s}.{k}" if isinstance(v, dict) else s: x for s, v in d.items()
            for k, x in (v.items() if isinstance(v, dict) else [(None, v)])}


def _allowed(key: str, patterns) -> bool:
    return any(key == p or (p.endswith(".*") and key.startswith(p[:-1])) for p in patterns)


def differing_keys(recipe: Recipe, checkpoint: str) -> dict[str, tuple]:
    """``{key: (checkpoint's value, recipe's value)}`` for the keys that differ and may not."""
    path = os.path.join(checkpoint, "recipe.yaml")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        raw = yaml_load(f) or {}
    try:       # the checkpoint's recipe as this schema reads it (keys added since get their defaults)
        saved = _keys(to_dict(recipe_from_dict(raw)))
    except RecipeError:
        saved = _keys(raw)
    now = _keys(to_dict(recipe))
    allowed = SAFE + tuple(recipe.train.resume_changes)
    return {k: (saved[k], now[k]) for k in now if k in saved and saved[k] != now[k] and not _allowed(k, allowed)}


def check_resume(recipe: Recipe, checkpoint: str) -> None:
    diff = differing_keys(recipe, checkpoint)
    if diff:
        shown = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in diff.items())
        raise RecipeError(f"train.resume: the recipe differs from the one of checkpoint {checkpoint} in {shown}"
                          + (f" ({recipe.source})" if recipe.source else "")
                          + ". Resume with the checkpoint's values, start a new run (another train.out_dir), "
                          "or list the keys in train.resume_changes")
