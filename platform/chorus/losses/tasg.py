"""Temporally adjacent subnetwork guidance (TASG), docs/method.md "The spiking core".

With per-timestep logits o_1..o_T and temperature τ_kd, the later timestep teaches the earlier::

    L_TASG = 1/(T-1) · Σ_{t=1}^{T-1} τ_kd² · KL( softmax(o_{t+1}/τ_kd) ‖ softmax(o_t/τ_kd) )

The teacher o_{t+1} is detached, the KL is averaged over the batch, and during training each pair's
term is dropped with probability ``p_drop`` (the normalisation stays 1/(T−1)).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_logits(logits: torch.Tensor, name: str = "logits") -> None:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(logits).__name__}")
    if logits.dim() != 3:
        raise ValueError(f"{name} must have shape [T, B, C] (time first); got shape {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise TypeError(f"{name} must be floating point; got dtype {logits.dtype}")


def tasg_loss(
    logits: torch.Tensor,
    temperature: float = 1.0,
    p_drop: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """L_TASG for ``logits`` of shape ``[T, B, C]``; 0 when T = 1 or every pair is dropped.

    ``p_drop`` > 0 drops pairs at random (draws from ``generator`` when given); pass ``p_drop=0`` at
    evaluation time.
    """
    _check_logits(logits)
    if not temperature > 0:
        raise ValueError(f"temperature={temperature!r} must be positive")
    if not 0.0 <= p_drop < 1.0:
        raise ValueError(f"p_drop={p_drop!r} must lie in [0, 1)")
    T = logits.shape[0]
    if T < 2:
        return logits.new_zeros((), dtype=torch.float32)
    z = logits.float() / temperature
    student = F.log_softmax(z[:-1], dim=-1)              # o_1 .. o_{T-1}
    teacher = F.log_softmax(z[1:].detach(), dim=-1)      # o_2 .. o_T, no gradient
    # KL(P_teacher ‖ Q_student) per pair, summed over classes, averaged over the batch: [T-1]
    kl = (teacher.exp() * (teacher - student)).sum(-1).mean(-1)
    if p_drop > 0:
        keep = torch.rand(T - 1, generator=generator, device="cpu" if generator is None else generator.device)
        kl = kl * (keep >= p_drop).to(kl.device, kl.dtype)
    return temperature**2 * kl.sum() / (T - 1)
