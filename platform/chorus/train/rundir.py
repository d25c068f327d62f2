"""The run folder and where to resume from (``train.out_dir``, ``train.resume``).

A fresh run gets ``runs/{name}-{YYYYmmdd-HHMMSS}`` unless ``train.out_dir`` names one. ``resume``:
``never`` (a folder that already holds checkpoints is refused, so nothing is overwritten), ``auto``
(the latest checkpoint of ``out_dir``, or of the newest ``runs/{name}-{YYYYmmdd-HHMMSS}[-n]`` — only
this recipe's own run folders, never ``runs/{name}-large-...``; a fresh start when none),
or a path to a run folder or a checkpoint folder.
"""
from __future__ import annotations

import os
import re
import time

from chorus.config import Recipe, RecipeError
from chorus.train.checkpoint import STATE_FILE, latest_checkpoint


def _ckpt_root(run_dir: str) -> str:
    return os.path.join(run_dir, "checkpoints")


def own_run_dirs(name: str, root: str = "runs") -> list[str]:
    """This recipe's run folders in ``root`` (``{name}-{YYYYmmdd-HHMMSS}`` or ``...-{n}``), newest first.

    Only that exact pattern matches: recipe ``exp`` never picks up ``exp-large-20240101-000000``."""
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        return []
    pattern = re.compile(re.escape(name) + r"-(\d{8})-(\d{6})(?:-(\d+))?")
    found = []
    for entry in os.listdir(root):
        m = pattern.fullmatch(entry)
        if m and os.path.isdir(os.path.join(root, entry)):
            found.append(((m.group(1), m.group(2), int(m.group(3) or 1)), os.path.join(root, entry)))
    return [path for _, path in sorted(found, reverse=True)]


def resolve(recipe: Recipe) -> tuple[str, str | None]:
    """Return ``(run_dir, checkpoint_to_resume_or_None)``; call on the main process and broadcast."""
    t = recipe.train
    where = f" in {recipe.source}" if recipe.source else ""
    mode = t.resume
    if mode not in ("never", "auto"):
        path = os.path.abspath(mode)
        if os.path.isfile(os.path.join(path, STATE_FILE)):
            return os.path.dirname(os.path.dirname(path)), path
        ck = latest_checkpoint(_ckpt_root(path))
        if ck is None:
            raise RecipeError(f"train.resume: {mode!r} is neither a checkpoint nor a run folder with "
                              f"checkpoints{where}")
        return path, ck
    if t.out_dir:
        run_dir = os.path.abspath(t.out_dir)
        if os.path.exists(run_dir) and not os.path.isdir(run_dir):
            raise RecipeError(f"train.out_dir (--out): {t.out_dir!r} is a file, not a folder{where}; "
                              f"give a folder for the run")
        ck = latest_checkpoint(_ckpt_root(run_dir))
        if ck is not None and mode == "never":
            raise RecipeError(f"train.out_dir: {t.out_dir!r} already holds checkpoints ({os.path.basename(ck)}); "
                              f"continue it with --resume (train.resume=auto) or choose another "
                              f"train.out_dir{where}")
        return run_dir, ck if mode == "auto" else None
    if mode == "auto":
        for cand in own_run_dirs(recipe.name):
            ck = latest_checkpoint(_ckpt_root(cand))
            if ck is not None:
                return cand, ck
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    run_dir = os.path.abspath(f"runs/{recipe.name}-{stamp}")
    n = 1
    while os.path.exists(run_dir):
        n += 1
        run_dir = os.path.abspath(f"runs/{recipe.name}-{stamp}-{n}")
    return run_dir, None
