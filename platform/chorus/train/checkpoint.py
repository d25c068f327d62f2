"""Checkpoints: atomic, keep the last k and the best by validation accuracy, full training state.

A checkpoint is a folder ``{run}/checkpoints/step_{step:09d}`` written by every process into
``.tmp-step_...`` and renamed into place by the main process (``os.replace``): a crash while saving
leaves only a temporary folder, never a broken checkpoint. It holds Accelerate's state (optimizer,
registered scheduler, grad scaler, RNG states of every process; DeepSpeed's ZeRO shards) plus
``trainer_state.json`` (epoch, batch position in the epoch, optimizer step, best accuracy, and
``finite``: whether every parameter and buffer -- BatchNorm running statistics included -- is finite),
``model.pt`` (the full weights) and ``recipe.yaml`` (the resolved recipe).

The weights are written once: ``model.pt`` is what ``chorus eval``, ``chorus report`` and a resume
all read -- Accelerate's own ``model.safetensors`` copy is skipped (its save/load pre-hooks below).
Under DeepSpeed the engine keeps its own module states (a resume needs them; ZeRO-3's are shards).
``USE_FILES`` (weights, recipe, state) are all that is needed to use a model: the MLflow "best"
artifact holds only those.
"""
from __future__ import annotations

import json
import os
import re
import shutil

import torch

from chorus.config import Recipe, save_recipe

_NAME = re.compile(r"^step_(\d{9})$")
BEST_FILE = "best.json"
STATE_FILE = "trainer_state.json"
MODEL_FILE = "model.pt"
RECIPE_FILE = "recipe.yaml"
USE_FILES = (MODEL_FILE, RECIPE_FILE, STATE_FILE)   # enough to evaluate or report a checkpoint


def checkpoint_name(step: int) -> str:
    return f"step_{step:09d}"


def list_checkpoints(root: str) -> list[str]:
    """Complete checkpoints under ``root``, oldest first."""
    if not os.path.isdir(root):
        return []
    names = [n for n in os.listdir(root) if _NAME.match(n) and os.path.isfile(os.path.join(root, n, STATE_FILE))]
    return [os.path.join(root, n) for n in sorted(names)]


def latest_checkpoint(root: str) -> str | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def read_state(path: str) -> dict:
    with open(os.path.join(path, STATE_FILE)) as f:
        return json.load(f)


def is_good(path: str) -> bool:
    """Checkpoint ``path`` was recorded with finite parameters and buffers (``finite`` in its state;
    a checkpoint written before that key existed is read from its ``model.pt``)."""
    state = read_state(path)
    if "finite" in state:
        return bool(state["finite"])
    return all_finite(load_model_weights(path))


def last_good_checkpoint(root: str) -> str | None:
    """The newest complete checkpoint under ``root`` whose parameters and buffers are all finite."""
    for path in reversed(list_checkpoints(root)):
        if is_good(path):
            return path
    return None


def all_finite(weights: dict) -> bool:
    """Every floating tensor of a state dict (parameters and buffers) is finite."""
    return all(bool(torch.isfinite(v).all()) for v in weights.values() if torch.is_tensor(v) and v.is_floating_point())


def _write_json(path: str, data: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


class CheckpointManager:
    """Saves and restores the whole training state through an ``Accelerator``; every process calls
    :meth:`save` and :meth:`load` together."""

    def __init__(self, root: str, accelerator, keep_last: int = 2):
        self.root = root
        self.acc = accelerator
        self.keep_last = keep_last
        if self.acc.is_main_process:
            os.makedirs(root, exist_ok=True)
        # one copy of the weights: Accelerate writes none (model.pt is written in save) and reads model.pt
        accelerator.register_save_state_pre_hook(_skip_model_files)
        accelerator.register_load_state_pre_hook(_load_model_file)

    @property
    def best(self) -> dict | None:
        p = os.path.join(self.root, BEST_FILE)
        if not os.path.isfile(p):
            return None
        with open(p) as f:
            return json.load(f)

    def best_path(self) -> str | None:
        b = self.best
        return os.path.join(self.root, b["name"]) if b and os.path.isdir(os.path.join(self.root, b["name"])) else None

    def save(self, state: dict, model, recipe: Recipe, val_acc: float | None = None) -> str:
        """Write checkpoint ``step_{state['step']}``; marks it best when ``val_acc`` beats the best so far."""
        acc = self.acc
        name = checkpoint_name(int(state["step"]))
        final = os.path.join(self.root, name)
        tmp = os.path.join(self.root, f".tmp-{name}")
        if acc.is_main_process:
            if os.path.exists(tmp):
                shutil.rmtree(tmp)
            os.makedirs(tmp)
        acc.wait_for_everyone()
        os.makedirs(tmp, exist_ok=True)   # every process writes here (ZeRO shards): a shared folder across nodes
        acc.save_state(tmp)
        weights = acc.get_state_dict(model)  # every process: ZeRO-3 gathers here
        acc.wait_for_everyone()              # every process has written its files before the rename
        if acc.is_main_process:
            # half precision (DeepSpeed bf16/fp16) is widened for evaluation; other dtypes are kept exactly
            torch.save({k: v.detach().float().cpu() if v.dtype in (torch.bfloat16, torch.float16) else v.detach().cpu()
                        for k, v in weights.items()}, os.path.join(tmp, MODEL_FILE))
            save_recipe(recipe, os.path.join(tmp, RECIPE_FILE))
            state = {**state, "finite": all_finite(weights)}
            _write_json(os.path.join(tmp, STATE_FILE), state)   # last: marks the folder complete
            if os.path.exists(final):                           # same step saved again (epoch end)
                trash = os.path.join(self.root, f".old-{name}")
                os.replace(final, trash)
                os.replace(tmp, final)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.replace(tmp, final)
            best = self.best
            if val_acc is not None and state["finite"] and (best is None or val_acc > best["val_acc"]):
                _write_json(os.path.join(self.root, BEST_FILE), {"name": name, "val_acc": val_acc,
                                                                 "step": state["step"], "epoch": state["epoch"]})
            self._prune()
        acc.wait_for_everyone()
        return final

    def last_good(self) -> str | None:
        """The newest checkpoint with finite parameters and buffers (what a NaN stop names)."""
        return last_good_checkpoint(self.root)

    def _prune(self) -> None:
        keep = set(list_checkpoints(self.root)[-self.keep_last:])
        for b in (self.best_path(), self.last_good()):   # never prune the best nor the last good one
            if b:
                keep.add(b)
        for path in list_checkpoints(self.root):
            if path not in keep:
                shutil.rmtree(path, ignore_errors=True)
        for n in os.listdir(self.root):   # leftovers of a crash while saving (no save is in flight now)
            if n.startswith((".tmp-", ".old-")):
                shutil.rmtree(os.path.join(self.root, n), ignore_errors=True)

    def load(self, path: str) -> dict:
        """Restore everything saved in checkpoint ``path``; returns its trainer state."""
        self.acc.load_state(path)
        return read_state(path)


def _skip_model_files(models, weights, output_dir) -> None:
    """Accelerate save-state pre-hook: save no model file (``model.pt`` holds the weights)."""
    weights.clear()


def _load_model_file(models, input_dir) -> None:
    """Accelerate load-state pre-hook: restore the weights from ``model.pt`` (Accelerate would look for
    the ``model.safetensors`` that :func:`_skip_model_files` did not write). ``models`` is empty under
    DeepSpeed, whose engine restores its own states."""
    from accelerate.utils import extract_model_from_parallel

    for model in models:
        extract_model_from_parallel(model).load_state_dict(load_model_weights(input_dir))
    models.clear()


def load_model_weights(path: str) -> dict:
    """The full weights saved in checkpoint folder ``path`` (``chorus eval``)."""
    return torch.load(os.path.join(path, MODEL_FILE), map_location="cpu", weights_only=True)
