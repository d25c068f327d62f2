"""The fused LIF + MPS neuron: forward and backward over the whole sequence in one autograd node.

Implements the equations of :mod:`chorus.neurons.reference` (docs/method.md, "The spiking core")
without a per-timestep autograd graph. Whatever the backend, only the input X (and V(0)) is kept for the
backward pass, which re-runs the forward to get H~ and H back (the recursion and its backward are
written out in :mod:`chorus.neurons.recursion`). The work is done by an *engine*, one per backend
(:mod:`chorus.neurons.backends` picks it):

- ``forward(x, v0, p, a, want_h, want_vp) -> (S, H~ | None, V(t−1) | None, saved)`` with x [T, N];
- ``backward(x, v0, saved, gS, gH~ | None, p, a) -> (∂L/∂X, ∂L/∂α)``, ∂L/∂α a 0-dim float64 tensor on
  x's device (no host synchronisation on CUDA).

:class:`BlockEngine` is the engine of the ``torch`` backend (eager) and, with compiled blocks, of
``inductor``.
"""
from __future__ import annotations

import torch

from chorus.neurons import recursion
from chorus.neurons.params import LIFParams
from chorus.neurons.recursion import Floats, Spec


class BlockEngine:
    """Runs :func:`recursion.forward_block` / :func:`recursion.backward_block` over blocks of timesteps.

    ``fwd`` / ``bwd`` take ``(spec, K, want_states, carry)`` and return the block function to call (the
    plain Python functions for ``torch``; compiled ones for ``inductor``). ``tensor_first`` passes the
    "first block" flag as a 0-dim tensor (so one compiled block serves every block).
    """

    def __init__(self, name: str, fwd, bwd, tensor_first: bool, block: int = recursion.BLOCK):
        self.name, self._fwd, self._bwd, self._tensor_first, self.block = name, fwd, bwd, tensor_first, block

    def _first(self, p: LIFParams, i: int, device):
        first = bool(p.mps and p.mps_init == "first" and i == 0)
        return torch.tensor(first, device=device) if self._tensor_first else first

    def forward(self, x, v0, p: LIFParams, a, want_h: bool, want_vp: bool):
        spec, f = Spec.of(p), Floats.of(p)
        oma = 1 - a
        T, N = x.shape
        v = v0 if v0 is not None else x.new_full((N,), f.vr)
        hs = x.new_zeros(N)
        want_states = want_h or want_vp
        spans = recursion.blocks(T, self.block)
        s_parts, h_parts, vp_parts, saved = [], [], [], []
        for i, (t0, t1) in enumerate(spans):
            carry = i + 1 < len(spans)
            fn = self._fwd(spec, t1 - t0, want_states, carry)
            s, h, vp, v_next, hs_next = fn(f, x[t0:t1], v, hs, a, oma, self._first(p, i, x.device))
            if carry:
                saved += [v_next, hs_next]  # the state the next block starts from, for the backward
                v, hs = v_next, hs_next
            s_parts.append(s)
            if want_states:
                h_parts.append(h)
                vp_parts.append(vp)

        def join(parts):
            return parts[0] if len(parts) == 1 else torch.cat(parts)

        return (join(s_parts), join(h_parts) if want_h else None, join(vp_parts) if want_vp else None, saved)

    def backward(self, x, v0, saved, gs, ghs, p: LIFParams, a):
        spec, f = Spec.of(p), Floats.of(p)
        oma = 1 - a
        T, N = x.shape
        spans = recursion.blocks(T, self.block)
        gv = x.new_zeros(N)
        g_next = x.new_zeros(N)
        acc = torch.zeros((), dtype=torch.float64, device=x.device)
        gx_parts = []
        for i in range(len(spans) - 1, -1, -1):
            t0, t1 = spans[i]
            if i == 0:
                v = v0 if v0 is not None else x.new_full((N,), f.vr)
                hs = x.new_zeros(N)
            else:
                v, hs = saved[2 * (i - 1)], saved[2 * (i - 1) + 1]
            fn = self._bwd(spec, t1 - t0, ghs is not None, i > 0)
            gx, gv_next, gn_next, part = fn(f, x[t0:t1], gs[t0:t1], None if ghs is None else ghs[t0:t1], v, hs,
                                            gv, g_next, a, oma, self._first(p, i, x.device))
            gv, g_next = gv_next, gn_next
            acc = acc + part.to(torch.float64)
            gx_parts.append(gx)
        gx = gx_parts[0] if len(gx_parts) == 1 else torch.cat(gx_parts[::-1])
        return gx, acc


def _eager_fwd(spec, K, want_states, carry):
    def run(f, x, v, hs, a, oma, first):
        return recursion.forward_block(spec, f, x, v, hs, a, oma, first, want_states, carry)
    return run


def _eager_bwd(spec, K, has_gh, carry):
    def run(f, x, gs, ghs, v, hs, gv, g_next, a, oma, first):
        return recursion.backward_block(spec, f, x, gs, ghs, v, hs, gv, g_next, a, oma, first, carry)
    return run


TORCH_ENGINE = BlockEngine("torch", _eager_fwd, _eager_bwd, tensor_first=False)


def _membrane_dtype(x: torch.Tensor) -> torch.dtype:
    """fp64 stays fp64; everything else (fp32, and fp16/bf16 inputs of the Triton kernels) runs in fp32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


class FusedLIF(torch.autograd.Function):
    """Inputs: x [T, N] (contiguous), alpha (one element, ignored without MPS), v0 [N] or None, the
    settings, the outputs wanted, and the engine. Saves x (and v0, and the engine's block states)."""

    @staticmethod
    def forward(ctx, x, alpha, v0, p: LIFParams, want_vprev: bool, spikes_only: bool, engine):
        a = alpha.detach().to(_membrane_dtype(x)).reshape(())
        s, hs, vp, saved = engine.forward(x, v0, p, a, not spikes_only, want_vprev)
        ctx.save_for_backward(x, alpha, v0, *saved)
        ctx.p, ctx.engine = p, engine
        ctx.set_materialize_grads(False)  # an unused H~ output costs no zero-filled gradient
        if vp is not None:
            ctx.mark_non_differentiable(vp)
        return s, hs, vp

    @staticmethod
    def backward(ctx, gs, g_hs, _g_vp):
        if gs is None and g_hs is None:
            return (None,) * 7
        p, engine = ctx.p, ctx.engine
        x, alpha, v0, *saved = ctx.saved_tensors
        a = alpha.detach().to(_membrane_dtype(x)).reshape(())
        gs = gs.contiguous() if gs is not None else torch.zeros_like(x)
        g_hs = None if g_hs is None else g_hs.contiguous()
        gx, acc = engine.backward(x, v0, saved, gs, g_hs, p, a)
        g_alpha = None
        if p.mps and ctx.needs_input_grad[1]:
            g_alpha = acc.to(device=alpha.device, dtype=alpha.dtype).reshape(alpha.shape)
        return gx, g_alpha, None, None, None, None, None


def lif_fused(x: torch.Tensor, alpha: torch.Tensor, p: LIFParams, v0: torch.Tensor | None = None,
              want_vprev: bool = False, spikes_only: bool = False, backend: str = "auto"):
    """Run the fused neuron on ``x`` of shape ``[T, ...]``; returns ``(spikes, h_tilde, v_prev|None)``.

    ``spikes_only=True`` returns ``(spikes, None, v_prev|None)`` (H~ is then not even written).
    ``backend`` names the implementation (see :mod:`chorus.neurons.backends`; ``"auto"`` picks the
    fastest correct one for the tensor's device and dtype on this machine).
    """
    from chorus.neurons import backends

    shape = x.shape
    x2 = x.reshape(shape[0], -1).contiguous()
    v02 = None if v0 is None else v0.reshape(-1).to(_membrane_dtype(x2)).contiguous()
    engine = backends.engine(backend, x2, p)
    s, hs, vp = FusedLIF.apply(x2, alpha, v02, p, want_vprev, spikes_only, engine)
    return s.view(shape), None if hs is None else hs.view(shape), None if vp is None else vp.view(shape)
