"""The fused LIF + MPS recursion in torch ops, one block of timesteps at a time: the one definition that
the ``torch`` backend runs eagerly and the ``inductor`` backend compiles (docs/method.md, "The spiking
core"; the plain autograd loop in :mod:`chorus.neurons.reference` is the readable oracle both are tested
against, and the C and Triton kernels implement these same lines).

A sequence is cut into blocks of at most ``BLOCK`` timesteps; the state carried from block to block is
(V, H~) forwards and (∂L/∂V, g(t+1)) backwards, so a compiled block never unrolls more than ``BLOCK``
steps whatever T is. Only the input X is kept for the backward pass (plus the block-start state of every
block but the first): the backward of a block re-runs its forward first, so H~(t), H(t) and H~(t−1) are
at hand, then runs the backward recursion, with g(t) = ∂L/∂H~(t) and gV(t) = ∂L/∂V(t) (0 past T)::

    g(t)      = ∂L/∂S(t)·Θ'(t) + gV(t)·∂V(t)/∂H~(t) + α·g(t+1) [+ ∂L/∂H~(t) when H~ is used]
    ∂L/∂H(t)  = (1 − α)·g(t)          (g(t) without MPS, and at t = 1 under mps_init "first")
    ∂L/∂X(t)  = c·∂L/∂H(t),   c = 1/τ (decay_input) or 1
    gV(t−1)   = (1 − 1/τ)·∂L/∂H(t)
    ∂L/∂α     = Σ_t g(t)·(H~(t−1) − H(t))   (the t = 1 term is 0 under "first"; H~(0) = 0 under "zero")

with ∂V/∂H~ = (1 − S) + (V_r − H~)·Θ' (hard reset) or 1 − V_th·Θ' (soft reset), the Θ' term dropped under
``detach_reset``. ∂L/∂α is accumulated directly from H~(t−1) − H(t), never as a difference of smoothed
potentials divided by 1 − α (which loses the digits that matter when α is close to 1).

``first`` says whether a block starts the sequence under ``mps_init="first"`` (then H~ of its first step
is the charge itself). It is a Python bool in eager use and a 0-dim bool tensor in compiled use, so one
compiled block serves the first block and the later ones.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from chorus.neurons.params import LIFParams
from chorus.neurons.surrogate import heaviside, surrogate_grad

BLOCK = 16  # the most timesteps one (compiled) block unrolls


class Spec(NamedTuple):
    """The settings that change the shape of the computation (a compiled block is specialised on them)."""

    decay_input: bool
    mps: bool
    soft: bool
    detach: bool
    surrogate: str

    @classmethod
    def of(cls, p: LIFParams) -> "Spec":
        return cls(bool(p.decay_input), bool(p.mps), p.soft_reset, bool(p.detach_reset), p.surrogate)


class Floats(NamedTuple):
    """The settings that are plain numbers (a compiled block takes them as inputs, not constants)."""

    tau: float
    vth: float
    vr: float
    k: float   # ∂H(t)/∂V(t−1) = 1 − 1/τ
    c: float   # ∂H(t)/∂X(t)
    sa: float  # surrogate α_s, or window width

    @classmethod
    def of(cls, p: LIFParams) -> "Floats":
        return cls(float(p.tau), float(p.v_threshold), p.vr, p.k, p.c, float(p.surrogate_alpha))


def blocks(T: int, block: int = BLOCK) -> list[tuple[int, int]]:
    """``[(t0, t1), ...]`` covering ``range(T)`` in blocks of ``block`` steps (the last one shorter)."""
    return [(t0, min(T, t0 + block)) for t0 in range(0, T, block)]


def _pick(first, if_first: torch.Tensor, otherwise: torch.Tensor) -> torch.Tensor:
    if isinstance(first, bool):
        return if_first if first else otherwise
    return torch.where(first, if_first, otherwise)


def _charge(spec: Spec, f: Floats, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    if spec.decay_input:
        return v + (x - (v - f.vr)) / f.tau
    return v - (v - f.vr) / f.tau + x


def _reset(spec: Spec, f: Floats, hs: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return hs - f.vth * s if spec.soft else hs * (1 - s) + f.vr * s


def _smooth(spec, first, k, h, hs, a, oma):
    """H~(t) from H(t) and H~(t−1) (``hs``), the first step of a sequence taking H(t) under ``first``."""
    if not spec.mps:
        return h
    if k == 0 and first is True:
        return h
    smoothed = a * hs + oma * h
    return _pick(first, h, smoothed) if k == 0 else smoothed


def forward_block(spec: Spec, f: Floats, x, v, hs, a, oma, first, want_states: bool, carry: bool = True):
    """Steps ``x`` ([K, N]) from V = ``v`` and H~ = ``hs`` (each [N]; ``hs`` unused when ``first`` is
    True). Returns ``(S [K, N], H~ [K, N] | None, V(t−1) [K, N] | None, V, H~)``, the last two being the
    state after the block (None unless ``carry``). The operation order is the reference's, so spikes and
    H~ are bit-identical to it."""
    s_out, h_out, vp_out = [], [], []
    for k in range(x.shape[0]):
        if want_states:
            vp_out.append(v)
        h = _charge(spec, f, x[k], v)
        hs = _smooth(spec, first, k, h, hs, a, oma)
        s = heaviside(hs - f.vth)
        v = _reset(spec, f, hs, s)
        s_out.append(s)
        if want_states:
            h_out.append(hs)
    if not carry:
        v = hs = None
    if not want_states:
        return torch.stack(s_out), None, None, v, hs
    return torch.stack(s_out), torch.stack(h_out), torch.stack(vp_out), v, hs


def backward_block(spec: Spec, f: Floats, x, gs, ghs, v, hs, gv, g_next, a, oma, first, carry: bool = True):
    """The backward of one block: ``x``, ``gs`` = ∂L/∂S and ``ghs`` = ∂L/∂H~ (or None) are [K, N]; ``v``,
    ``hs`` the state the block's forward started from; ``gv`` = ∂L/∂V and ``g_next`` = g of the step
    after the block (zeros after the last). Returns ``(∂L/∂X [K, N], gV, g, Σ g·(H~(t−1) − H(t)))``, the
    middle two to carry into the block before (None unless ``carry``), the sum (a 0-dim tensor, 0
    without MPS) over the block's neurons and steps."""
    K = x.shape[0]
    charges, smoothed, prevs = [], [], []
    for k in range(K):  # the block's forward again: H(t), H~(t) and H~(t−1), exactly as in the forward
        h = _charge(spec, f, x[k], v)
        prevs.append(hs)
        hs = _smooth(spec, first, k, h, hs, a, oma)
        s = heaviside(hs - f.vth)
        v = _reset(spec, f, hs, s)
        charges.append(h)
        smoothed.append(hs)
    gx = [None] * K
    acc = None
    for k in range(K - 1, -1, -1):
        h = smoothed[k]
        xs = h - f.vth
        sg = surrogate_grad(spec.surrogate, f.sa, xs)
        if spec.soft:
            dvdh = 1.0 if spec.detach else 1 - f.vth * sg
        else:
            s = heaviside(xs)
            dvdh = (1 - s) if spec.detach else (1 - s) + (f.vr - h) * sg
        g = gs[k] * sg + gv * dvdh
        if ghs is not None:
            g = g + ghs[k]
        if spec.mps:
            g = g + a * g_next
            g_next = g
            term = g * (prevs[k] - charges[k]) if (k > 0 or first is not True) else None
            if k == 0 and term is not None and not isinstance(first, bool):
                term = torch.where(first, torch.zeros_like(term), term)
            if term is not None:
                acc = term if acc is None else acc + term
            gh = _pick(first, g, oma * g) if k == 0 else oma * g
        else:
            gh = g
        gx[k] = f.c * gh
        gv = f.k * gh
    total = acc.sum() if acc is not None else torch.zeros((), dtype=x.dtype, device=x.device)
    if not carry:
        gv = g_next = None
    return torch.stack(gx), gv, g_next, total
