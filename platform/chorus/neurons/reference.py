"""The plain per-timestep LIF + MPS neuron: the readable definition (docs/method.md, "The spiking core").

Autograd runs through an explicit Python loop over t, exactly as the equations read::

    H(t)  = V(t-1) + (X(t) - (V(t-1) - V_r)) / τ        (decay_input)
    H(t)  = V(t-1) - (V(t-1) - V_r) / τ + X(t)           (no decay_input)
    H~(1) = H(1); H~(t) = α·H~(t-1) + (1 - α)·H(t), t ≥ 2 (MPS, mps_init "first"; without MPS H~(t) = H(t))
    H~(t) = α·H~(t-1) + (1 - α)·H(t),  H~(0) = 0         (MPS, mps_init "zero")
    S(t)  = Θ(H~(t) - V_th)
    V(t)  = H~(t)·(1 - S(t)) + V_r·S(t)                  (hard reset)
    V(t)  = H~(t) - V_th·S(t)                            (soft reset)

It is slow and memory-hungry on purpose; every fast backend (:mod:`chorus.neurons.backends`) is
tested against this function.
"""
from __future__ import annotations

import torch

from chorus.neurons.params import LIFParams
from chorus.neurons.surrogate import spike


def initial_h_tilde(p: LIFParams, like: torch.Tensor) -> torch.Tensor | None:
    """What :func:`lif_step` takes as H~(t−1) at the first timestep: ``None`` for ``mps_init="first"``
    (there is no previous smoothed potential: H~(1) = H(1)), zeros for ``"zero"`` (H~(0) = 0)."""
    return None if p.mps_init == "first" else torch.zeros_like(like)


def lif_step(
    p: LIFParams,
    x: torch.Tensor,
    v: torch.Tensor,
    h_prev: torch.Tensor | None,
    alpha: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One timestep of the equations above: ``(S(t), V(t), H~(t))`` from X(t), V(t−1) and H~(t−1).

    ``alpha`` is used only when ``p.mps``; ``h_prev=None`` means there is no previous smoothed
    potential (the first step under ``mps_init="first"``), so H~(t) = H(t). Start a sequence with
    :func:`initial_h_tilde`. :func:`lif_reference` loops over this function, and so does the recurrent
    SRNN layer (:mod:`chorus.models.srnn`), which needs its spikes between steps.
    """
    vr = p.vr
    if p.decay_input:
        h = v + (x - (v - vr)) / p.tau
    else:
        h = v - (v - vr) / p.tau + x
    hs = alpha * h_prev + (1 - alpha) * h if p.mps and h_prev is not None else h
    s = spike(hs - p.v_threshold, p.surrogate, p.surrogate_alpha)
    s_reset = s.detach() if p.detach_reset else s
    if p.soft_reset:
        v_new = hs - p.v_threshold * s_reset
    else:
        v_new = hs * (1 - s_reset) + vr * s_reset
    return s, v_new, hs


def lif_reference(
    x: torch.Tensor,
    alpha: torch.Tensor | None,
    p: LIFParams,
    v0: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the neuron over ``x`` of shape ``[T, ...]``.

    ``alpha`` is the smoothing coefficient (a 0-dim tensor, used only when ``p.mps``); ``v0`` the
    initial potential V(0) (defaults to V_r). Returns ``(spikes, h_tilde, v_prev)``, each ``[T, ...]``,
    where ``v_prev[t]`` is the potential V(t−1) carried into timestep t.
    """
    vr = p.vr
    v = torch.full_like(x[0], vr) if v0 is None else v0.to(x.dtype)
    hs = initial_h_tilde(p, x[0])
    spikes, hss, vprevs = [], [], []
    for t in range(x.shape[0]):
        vprevs.append(v)
        s, v, hs = lif_step(p, x[t], v, hs, alpha)
        spikes.append(s)
        hss.append(hs)
    return torch.stack(spikes), torch.stack(hss), torch.stack(vprevs)
