"""Optimizers (SGD, AdamW) and learning-rate schedules (cosine, step, constant; linear warm-up).

Schedules are functions of the optimizer step; ``step_size`` and warm-up come in epochs and are turned
into steps with ``steps_per_epoch``. Parameter groups (:func:`param_groups`, each tagged with its name
under :data:`GROUP_KEY`): ``decay`` (weights, ``optim.weight_decay``), ``no_decay`` (biases and
normalisation weights) and ``mps`` (the MPS parameters β of every LIF, docs/method.md, "The spiking core":
base rate ``optim.mps.lr``, default ``optim.lr``, and ``optim.mps.weight_decay``, default 0 -- decaying β
would pull every α towards 0.5). The schedule multiplies every group's base rate by the same factor.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from chorus.config import OptimConfig, ScheduleConfig


GROUP_KEY = "chorus_group"     # a param-group key torch keeps (state_dict, DeepSpeed's wrapped optimizer)


def mps_parameters(model: nn.Module) -> list[nn.Parameter]:
    """β of every MPS layer of ``model`` (chorus ``LIF`` with ``mps=True``), in module order."""
    from chorus.models import mps_layers

    return [lif.beta for _, lif in mps_layers(model) if lif.beta is not None and lif.beta.requires_grad]


def param_groups(model: nn.Module, weight_decay: float, cfg: OptimConfig | None = None) -> list[dict]:
    """``decay`` (always first), ``no_decay`` and ``mps`` groups; empty groups other than the first are
    left out. Without ``cfg`` β joins ``no_decay`` at the base rate (the groups before ``optim.mps``)."""
    mps = {id(p) for p in mps_parameters(model)} if cfg is not None else set()
    decay, no_decay, beta = [], [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (beta if id(p) in mps else decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay, GROUP_KEY: "decay"}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, GROUP_KEY: "no_decay"})
    if beta:
        groups.append({"params": beta, "weight_decay": cfg.mps.weight_decay, "lr": group_lr(cfg, "mps"),
                       GROUP_KEY: "mps"})
    return groups


def group_lr(cfg: OptimConfig, group: str | None) -> float:
    """The base learning rate of param group ``group`` (``mps``: ``optim.mps.lr``, else ``optim.lr``)."""
    if group == "mps" and cfg.mps.lr is not None:
        return cfg.mps.lr
    return cfg.lr


def group_weight_decay(cfg: OptimConfig, group: str | None, index: int) -> float:
    """The recipe's weight decay of a param group (groups saved without a name: the first decays)."""
    if group == "mps":
        return cfg.mps.weight_decay
    if group == "decay" or (group is None and index == 0):
        return cfg.weight_decay
    return 0.0


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay, cfg)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)
    raise ValueError(f"optim.name={cfg.name!r} is not known; choose sgd or adamw")


def lr_factor(step: int, cfg: ScheduleConfig, steps_per_epoch: int, total_steps: int, base_lr: float) -> float:
    """Multiplier of the base learning rate before optimizer step ``step`` (0-based)."""
    spe = max(1, steps_per_epoch)
    warmup = int(round(cfg.warmup_epochs * spe))
    if step < warmup:
        return (step + 1) / warmup
    if cfg.name == "constant":
        return 1.0
    if cfg.name == "step":
        return cfg.gamma ** ((step // spe) // cfg.step_size)
    if cfg.name == "cosine":
        floor = min(1.0, cfg.min_lr / base_lr) if base_lr > 0 else 0.0
        span = max(1, total_steps - warmup)
        progress = min(1.0, (step - warmup) / span)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"schedule.name={cfg.name!r} is not known; choose cosine, step or constant")


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, steps_per_epoch: int,
                    total_steps: int, base_lr: float) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` stepped once per optimizer step by the loop."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, cfg, steps_per_epoch, total_steps, base_lr))


def recipe_hparams(cfg: OptimConfig) -> dict:
    """The optimizer hyper-parameters (other than ``lr``) that ``optim`` sets, as torch param-group keys."""
    if cfg.name == "sgd":
        return {"momentum": cfg.momentum, "nesterov": cfg.nesterov}
    if cfg.name == "adamw":
        return {"betas": tuple(cfg.betas), "eps": cfg.eps}
    raise ValueError(f"optim.name={cfg.name!r} is not known; choose sgd or adamw")


def reapply_hparams(optimizer: torch.optim.Optimizer, cfg: OptimConfig) -> dict:
    """After a resume, give every param group the recipe's hyper-parameters (weight decay, momentum,
    Nesterov, betas, eps; ``lr`` goes through :func:`rebase_lr`): ``load_state_dict`` restores the
    values saved with the checkpoint, and a resumed recipe (or a PBT-perturbed one) must win.
    The decay group gets ``optim.weight_decay``, the no-decay group 0.0, the MPS group
    ``optim.mps.weight_decay``. Returns ``{key: (saved, recipe)}`` for the values that changed."""
    want = recipe_hparams(cfg)
    changed = {}
    for i, group in enumerate(optimizer.param_groups):
        decay = group_weight_decay(cfg, group.get(GROUP_KEY), i)
        for key, value in {**want, "weight_decay": decay}.items():
            if key not in group:
                continue
            old = group[key]
            same = (tuple(old) == tuple(value)) if isinstance(value, tuple) else old == value
            if not same:
                changed.setdefault(key, (tuple(old) if isinstance(old, (list, tuple)) else old, value))
                group[key] = value
    return changed


def rebase_lr(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LambdaLR,
              lr: float | OptimConfig) -> dict | None:
    """After a resume, make the recipe's rates the base learning rates (``optim.lr``, and
    ``optim.mps.lr`` for the MPS group when ``lr`` is the whole ``optim`` section), keeping the
    schedule's current factor; returns ``{group: (checkpoint's base rate, recipe's)}`` for the groups
    that changed, or None when none did.

    Population-based training (``chorus tune``, scheduler pbt) resumes a trial from another trial's
    checkpoint with a perturbed ``optim.lr`` (or ``optim.mps.lr``): the recipe must win over the rates
    saved with the optimizer."""
    saved = list(scheduler.base_lrs)
    names = [g.get(GROUP_KEY) for g in optimizer.param_groups]
    want = [group_lr(lr, n) if isinstance(lr, OptimConfig) else lr for n in names]
    if all(math.isclose(b, w, rel_tol=1e-9) for b, w in zip(saved, want)):
        return None
    scheduler.base_lrs = list(want)
    factor = scheduler.lr_lambdas[0](scheduler.last_epoch)
    for group, base in zip(optimizer.param_groups, want):
        group["initial_lr"] = base
        group["lr"] = base * factor
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
    return {n or str(i): (b, w) for i, (n, b, w) in enumerate(zip(names, saved, want))
            if not math.isclose(b, w, rel_tol=1e-9)}
