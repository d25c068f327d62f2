"""The fused LIF + MPS neuron: forward and backward over the whole sequence in one autograd node.

Implements the same equations as :mod:`chorus.neurons.reference` (DESIGN.md, "The spiking core")
without a per-timestep autograd graph. Only H~ (``[T, ...]``, fp32) is saved for the backward pass;
S(t), the surrogate Θ'(H~ − V_th) and the reset derivative are recomputed from it. When only the
spikes are wanted (the default in a network) the C kernel keeps nothing new at all: autograd keeps the
input X, and the backward re-runs the forward recursion chunk by chunk in cache to get H~ back. The backward
recursion, with g(t) = ∂L/∂H~(t) and gV(t) = ∂L/∂V(t) (both 0 past T)::

    g(t)      = ∂L/∂S(t)·Θ'(t) + gV(t)·∂V(t)/∂H~(t) + α·g(t+1) [+ ∂L/∂H~(t) when H~ is used]
    ∂L/∂H(t)  = (1 − α)·g(t)                                         (g(t) without MPS)
    ∂L/∂X(t)  = c·∂L/∂H(t),   c = 1/τ (decay_input) or 1
    gV(t−1)   = (1 − 1/τ)·∂L/∂H(t)
    ∂L/∂α     = Σ_t g(t)·(H~(t−1) − H(t)) = −Σ_t g(t)·(H~(t) − H~(t−1)) / (1 − α)

(α·g(t+1) only with MPS), with ∂V/∂H~ = (1 − S) + (V_r − H~)·Θ' (hard reset) or 1 − V_th·Θ' (soft reset), the Θ' term dropped
under ``detach_reset``. float32 tensors on the CPU run the C kernel (``lif_kernel.c``); every other
case (CUDA, float64 for gradcheck, no compiler) runs the same recursion with torch ops.
"""
from __future__ import annotations

import torch

from chorus.neurons import cpu_kernel
from chorus.neurons.params import LIFParams
from chorus.neurons.surrogate import heaviside, surrogate_grad


def _forward_torch(x, v0, p: LIFParams, alpha, want_vprev):
    vr = p.vr
    v = torch.full_like(x[0], vr) if v0 is None else v0
    hs = torch.zeros_like(x[0])
    s_out = torch.empty_like(x)
    hs_out = torch.empty_like(x)
    vp_out = torch.empty_like(x) if want_vprev else None
    oma = 1 - alpha if p.mps else None
    for t in range(x.shape[0]):
        if want_vprev:
            vp_out[t] = v
        if p.decay_input:
            h = v + (x[t] - (v - vr)) / p.tau
        else:
            h = v - (v - vr) / p.tau + x[t]
        hs = alpha * hs + oma * h if p.mps else h
        s = heaviside(hs - p.v_threshold)
        v = hs - p.v_threshold * s if p.soft_reset else hs * (1 - s) + vr * s
        s_out[t] = s
        hs_out[t] = hs
    return s_out, hs_out, vp_out


def _backward_torch(gs, ghs, hs_all, p: LIFParams, alpha):
    vr, k, c = p.vr, p.k, p.c
    gx = torch.empty_like(hs_all)
    gv = torch.zeros_like(hs_all[0])
    g_next = torch.zeros_like(hs_all[0])
    acc = torch.zeros((), dtype=torch.float64, device=hs_all.device)
    for t in range(hs_all.shape[0] - 1, -1, -1):
        h = hs_all[t]
        xs = h - p.v_threshold
        sg = surrogate_grad(p.surrogate, p.surrogate_alpha, xs)
        if p.soft_reset:
            dvdh = 1.0 if p.detach_reset else 1 - p.v_threshold * sg
        else:
            s = heaviside(xs)
            dvdh = (1 - s) if p.detach_reset else (1 - s) + (vr - h) * sg
        g = gs[t] * sg + gv * dvdh
        if ghs is not None:
            g = g + ghs[t]
        if p.mps:
            g = g + alpha * g_next
            g_next = g
            prev = hs_all[t - 1] if t > 0 else torch.zeros_like(h)
            acc = acc + (g * (h - prev)).sum(dtype=torch.float64)
            gh = (1 - alpha) * g
        else:
            gh = g
        gx[t] = c * gh
        gv = k * gh
    return gx, acc


class FusedLIF(torch.autograd.Function):
    """Inputs: x [T, N] (fp32 or fp64, contiguous), alpha (0-dim, ignored without MPS), v0 [N] or None.

    With ``spikes_only`` on the C-kernel path, H~ is neither returned nor kept: the backward recomputes
    it from x (which autograd then keeps instead; it is usually alive anyway, and is no larger).
    """

    @staticmethod
    def forward(ctx, x, alpha, v0, p: LIFParams, want_vprev: bool, spikes_only: bool):
        use_kernel = x.device.type == "cpu" and x.dtype == torch.float32 and cpu_kernel.available()
        recompute = use_kernel and spikes_only and not want_vprev
        a = alpha.detach().to(x.dtype)
        if use_kernel:
            s, hs, vp = cpu_kernel.forward(x, v0, p, float(a), float(1 - a), not recompute, want_vprev)
        else:
            s, hs, vp = _forward_torch(x, v0, p, a, want_vprev)
        if recompute:
            ctx.save_for_backward(x, alpha, v0)
        else:
            ctx.save_for_backward(hs, alpha)
        ctx.p, ctx.use_kernel, ctx.recompute = p, use_kernel, recompute
        ctx.set_materialize_grads(False)  # an unused H~ output costs no zero-filled gradient
        if vp is not None:
            ctx.mark_non_differentiable(vp)
        if spikes_only:
            return s, None, vp
        return s, hs, vp

    @staticmethod
    def backward(ctx, gs, g_hs, _g_vp):
        p = ctx.p
        if ctx.recompute:
            x, alpha, v0 = ctx.saved_tensors
            a = alpha.detach().to(x.dtype)
        else:
            hs, alpha = ctx.saved_tensors
            a = alpha.detach().to(hs.dtype)
        if gs is None and g_hs is None:
            return (None,) * 6
        if ctx.recompute:
            gx, acc = cpu_kernel.backward_recompute(gs.contiguous(), x, v0, p, float(a), float(1 - a))
            acc = torch.tensor(acc, dtype=torch.float64)
        else:
            gs = gs.contiguous() if gs is not None else torch.zeros_like(hs)
            g_hs = None if g_hs is None else g_hs.contiguous()
            if ctx.use_kernel:
                gx, acc = cpu_kernel.backward(gs, g_hs, hs, p, float(a), float(1 - a))
                acc = torch.tensor(acc, dtype=torch.float64)
            else:
                gx, acc = _backward_torch(gs, g_hs, hs, p, a)
        g_alpha = None
        if p.mps and ctx.needs_input_grad[1]:
            oma = (1 - alpha.detach()).double().clamp_min(torch.finfo(torch.float64).tiny)
            g_alpha = (-acc.to(oma.device) / oma).to(alpha.dtype)
        return gx, g_alpha, None, None, None, None


def lif_fused(x: torch.Tensor, alpha: torch.Tensor, p: LIFParams, v0: torch.Tensor | None = None,
              want_vprev: bool = False, spikes_only: bool = False):
    """Run the fused neuron on ``x`` of shape ``[T, ...]``; returns ``(spikes, h_tilde, v_prev|None)``.

    ``spikes_only=True`` returns ``(spikes, None, v_prev|None)`` and, on the CPU kernel path without
    ``want_vprev``, recomputes H~ in the backward instead of keeping it (less memory traffic and one
    [T, ...] tensor less in the forward).
    """
    shape = x.shape
    x2 = x.reshape(shape[0], -1).contiguous()
    v02 = None if v0 is None else v0.reshape(-1).to(x2.dtype).contiguous()
    s, hs, vp = FusedLIF.apply(x2, alpha, v02, p, want_vprev, spikes_only)
    return s.view(shape), None if hs is None else hs.view(shape), None if vp is None else vp.view(shape)
