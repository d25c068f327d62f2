"""Optimizers (SGD, AdamW) and learning-rate schedules (cosine, step, constant; linear warm-up).

Schedules are functions of the optimizer step; ``step_size`` and warm-up come in epochs and are turned
into steps with ``steps_per_epoch``. Weight decay skips biases, normalisation weights and the MPS
parameters β (0- and 1-dimensional tensors): decaying β would pull every α towards 0.5.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from chorus.config import OptimConfig, ScheduleConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
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
    The decay group (the first, see :func:`param_groups`) gets ``optim.weight_decay``; the no-decay
    group keeps 0.0. Returns ``{key: (saved, recipe)}`` for the values that changed."""
    want = recipe_hparams(cfg)
    changed = {}
    for i, group in enumerate(optimizer.param_groups):
        for key, value in {**want, "weight_decay": cfg.weight_decay if i == 0 else 0.0}.items():
            if key not in group:
                continue
            old = group[key]
            same = (tuple(old) == tuple(value)) if isinstance(value, tuple) else old == value
            if not same:
                changed.setdefault(key, (tuple(old) if isinstance(old, (list, tuple)) else old, value))
                group[key] = value
    return changed


def rebase_lr(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LambdaLR, lr: float) -> float | None:
    """After a resume, make ``lr`` (the recipe's ``optim.lr``) the base learning rate, keeping the
    schedule's current factor; returns the base rate the checkpoint had, or None when unchanged.

    Population-based training (``chorus tune``, scheduler pbt) resumes a trial from another trial's
    checkpoint with a perturbed ``optim.lr``: the recipe must win over the rate saved with the optimizer."""
    saved = list(scheduler.base_lrs)
    if all(math.isclose(b, lr, rel_tol=1e-9) for b in saved):
        return None
    scheduler.base_lrs = [lr for _ in saved]
    factor = scheduler.lr_lambdas[0](scheduler.last_epoch)
    for group in optimizer.param_groups:
        group["initial_lr"] = lr
        group["lr"] = lr * factor
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
    return saved[0]
