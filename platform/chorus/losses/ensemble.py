"""The ensemble training loss: ``L = CE(mean_t o_t, y) + γ·L_TASG`` (docs/method.md, "The spiking core").

``ce="mean"`` (default) applies cross-entropy to the mean of the per-timestep logits (the ensemble
output); ``ce="tet"`` replaces it by the per-timestep CE of TET, 1/T Σ_t CE(o_t, y).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from chorus.losses.tasg import _check_logits, tasg_loss

CE_MODES = ("mean", "tet")


def ensemble_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    gamma: float = 1.0,
    temperature: float = 1.0,
    p_drop: float = 0.0,
    ce: str = "mean",
    label_smoothing: float = 0.0,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Return ``{"loss", "loss_ce", "loss_tasg"}`` for logits ``[T, B, C]`` and integer targets ``[B]``."""
    _check_logits(logits)
    if ce not in CE_MODES:
        raise ValueError(f"ce={ce!r} is not known; choose one of {', '.join(CE_MODES)}")
    if gamma < 0:
        raise ValueError(f"gamma={gamma!r} must be >= 0")
    if target.dim() != 1 or target.shape[0] != logits.shape[1]:
        raise ValueError(f"target must have shape [B] = [{logits.shape[1]}]; got {tuple(target.shape)}")
    lf = logits.float()
    if ce == "mean":
        loss_ce = F.cross_entropy(lf.mean(0), target, label_smoothing=label_smoothing)
    else:
        T, B, C = lf.shape
        loss_ce = F.cross_entropy(lf.reshape(T * B, C), target.repeat(T), label_smoothing=label_smoothing)
    if gamma > 0:
        loss_tasg = tasg_loss(lf, temperature, p_drop, generator)
    else:
        loss_tasg = lf.new_zeros(())
    return {"loss": loss_ce + gamma * loss_tasg, "loss_ce": loss_ce, "loss_tasg": loss_tasg}


class EnsembleLoss(nn.Module):
    """Module form of :func:`ensemble_loss`; ``p_drop`` applies in training mode only."""

    def __init__(self, gamma: float = 1.0, temperature: float = 1.0, p_drop: float = 0.0, ce: str = "mean",
                 label_smoothing: float = 0.0):
        super().__init__()
        if ce not in CE_MODES:
            raise ValueError(f"ce={ce!r} is not known; choose one of {', '.join(CE_MODES)}")
        self.gamma, self.temperature, self.p_drop, self.ce = gamma, temperature, p_drop, ce
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor, generator: torch.Generator | None = None):
        return ensemble_loss(logits, target, self.gamma, self.temperature,
                             self.p_drop if self.training else 0.0, self.ce, self.label_smoothing, generator)
