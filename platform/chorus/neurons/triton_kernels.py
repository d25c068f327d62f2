"""Triton kernels of the fused LIF + MPS neuron (docs/method.md, "The spiking core"): the recursion of
:mod:`chorus.neurons.recursion`, each program stepping BLOCK neurons through all T timesteps in a loop
(no unroll over T), the membrane in fp32 whatever the input dtype.

Imported only when Triton is installed. ``TRITON_INTERPRET=1`` must be set before Triton is first
imported for the kernels to run on CPU tensors (the test suite does so in its conftest).

The forward writes S (in the input's dtype) and, when asked, H~ and V(t−1) (fp32). The backward reads
H~ (kept by the forward, or recomputed by running the forward kernel again) and X, rebuilds H(t) from
V(t−1) = reset(H~(t−1)) exactly as the forward computed it, and writes ∂L/∂X plus one partial sum of
g(t)·(H~(t−1) − H(t)) per program; the caller adds those on the device. Kernels are launched with
``enable_fp_fusion=False`` and divide with ``div_rn``, so spikes are bit-identical to the reference.
"""
from __future__ import annotations

import triton
import triton.language as tl

PI_2 = 1.5707963267948966


@triton.jit
def _charge(x, v, tau, vr, DECAY: tl.constexpr):
    if DECAY:
        h = v + tl.math.div_rn(x - (v - vr), tau)
    else:
        h = v - tl.math.div_rn(v - vr, tau) + x
    return h


@triton.jit
def _reset(hs, s, vth, vr, SOFT: tl.constexpr):
    if SOFT:
        v = hs - vth * s
    else:
        v = hs * (1.0 - s) + vr * s
    return v


@triton.jit
def _surrogate(xs, sa, SURR: tl.constexpr):
    if SURR == 0:
        sg = tl.sigmoid(xs * sa)
        out = (1.0 - sg) * sg * sa
    elif SURR == 1:
        z = 1.5707963267948966 * sa * xs
        out = sa / 2.0 / (1.0 + z * z)
    else:
        out = tl.where(tl.abs(xs) < sa / 2.0, 1.0 / sa, 0.0)
    return out


@triton.jit
def lif_fwd_kernel(x_ptr, v0_ptr, a_ptr, s_ptr, hs_ptr, vp_ptr, T, N, tau, vth, vr,
                   DECAY: tl.constexpr, MPS: tl.constexpr, SOFT: tl.constexpr, FIRST: tl.constexpr,
                   HAS_V0: tl.constexpr, WANT_H: tl.constexpr, WANT_VP: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    a = tl.load(a_ptr).to(tl.float32)
    oma = 1.0 - a
    if HAS_V0:
        v = tl.load(v0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    else:
        v = tl.zeros([BLOCK], dtype=tl.float32) + vr
    hs = tl.zeros([BLOCK], dtype=tl.float32)
    for t in range(T):
        row = t * N + offs
        if WANT_VP:
            tl.store(vp_ptr + row, v, mask=mask)
        x = tl.load(x_ptr + row, mask=mask, other=0.0).to(tl.float32)
        h = _charge(x, v, tau, vr, DECAY)
        if MPS:
            smoothed = a * hs + oma * h
            if FIRST:
                hs = tl.where(t == 0, h, smoothed)
            else:
                hs = smoothed
        else:
            hs = h
        s = tl.where(hs - vth >= 0.0, 1.0, 0.0)
        v = _reset(hs, s, vth, vr, SOFT)
        tl.store(s_ptr + row, s.to(s_ptr.dtype.element_ty), mask=mask)
        if WANT_H:
            tl.store(hs_ptr + row, hs, mask=mask)


@triton.jit
def lif_bwd_kernel(x_ptr, v0_ptr, a_ptr, hs_ptr, gs_ptr, ghs_ptr, gx_ptr, part_ptr, T, N,
                   tau, vth, vr, k, c, sa,
                   DECAY: tl.constexpr, MPS: tl.constexpr, SOFT: tl.constexpr, DETACH: tl.constexpr,
                   SURR: tl.constexpr, FIRST: tl.constexpr, HAS_V0: tl.constexpr, HAS_GH: tl.constexpr,
                   BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    a = tl.load(a_ptr).to(tl.float32)
    oma = 1.0 - a
    if HAS_V0:
        v_init = tl.load(v0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    else:
        v_init = tl.zeros([BLOCK], dtype=tl.float32) + vr
    gv = tl.zeros([BLOCK], dtype=tl.float32)
    gn = tl.zeros([BLOCK], dtype=tl.float32)
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    h = tl.load(hs_ptr + (T - 1) * N + offs, mask=mask, other=0.0)  # H~(t), carried down the loop
    for i in range(T):
        t = T - 1 - i
        row = t * N + offs
        # V(t-1) from H~(t-1) exactly as the forward reset it, then H(t) as the forward charged it
        if t > 0:
            hp = tl.load(hs_ptr + row - N, mask=mask, other=0.0)
            sp = tl.where(hp - vth >= 0.0, 1.0, 0.0)
            vprev = _reset(hp, sp, vth, vr, SOFT)
        else:
            hp = tl.zeros([BLOCK], dtype=tl.float32)
            vprev = v_init
        x = tl.load(x_ptr + row, mask=mask, other=0.0).to(tl.float32)
        hc = _charge(x, vprev, tau, vr, DECAY)
        xs = h - vth
        sg = _surrogate(xs, sa, SURR)
        if SOFT:
            if DETACH:
                dvdh = tl.zeros([BLOCK], dtype=tl.float32) + 1.0
            else:
                dvdh = 1.0 - vth * sg
        else:
            s = tl.where(xs >= 0.0, 1.0, 0.0)
            if DETACH:
                dvdh = 1.0 - s
            else:
                dvdh = (1.0 - s) + (vr - h) * sg
        g = tl.load(gs_ptr + row, mask=mask, other=0.0).to(tl.float32) * sg + gv * dvdh
        if HAS_GH:
            g = g + tl.load(ghs_ptr + row, mask=mask, other=0.0).to(tl.float32)
        if MPS:
            g = g + a * gn
            gn = g
            if FIRST:
                on = t > 0
            else:
                on = t >= 0
            acc += tl.where(on & mask, g * (hp - hc), 0.0)
            gh = tl.where(on, oma * g, g)
        else:
            gh = g
        tl.store(gx_ptr + row, (c * gh).to(gx_ptr.dtype.element_ty), mask=mask)
        gv = k * gh
        h = hp
    tl.store(part_ptr + pid, tl.sum(acc, axis=0))
