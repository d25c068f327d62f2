"""The ``triton`` backend: launches :mod:`chorus.neurons.triton_kernels` (CUDA; CPU tensors only under
``TRITON_INTERPRET=1``, which is for checking exactness, not speed).

α is read from its device tensor inside the kernels and ∂L/∂α is summed on the device from one
partial sum per program, so a step never waits for the host. The input may be fp16/bf16 (autocast):
the kernels load it into fp32, spikes come back in the input's dtype, the membrane never leaves fp32.

The backward needs H~. :data:`KEEP` chooses how it gets it: ``True`` (default) the forward writes H~
and autograd keeps it beside X (one more [T, N] fp32 tensor alive until the backward, one pass less);
``False`` the backward runs the forward kernel again into a temporary (less memory held between the
passes, one more pass over X). ``CHORUS_TRITON_KEEP=0`` sets it to False; ``bench/gpu_check.py`` measures both.
"""
from __future__ import annotations

import os

import torch

from chorus.neurons.params import LIFParams
from chorus.neurons.surrogate import SURROGATE_CODE

KEEP = os.environ.get("CHORUS_TRITON_KEEP", "1") != "0"
BLOCK = 1024
_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def installed() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _kernels():
    from chorus.neurons import triton_kernels

    return triton_kernels


def _launch_opts() -> dict:
    return {} if interpreting() else {"enable_fp_fusion": False, "num_warps": 4}


def _common(p: LIFParams):
    return dict(DECAY=bool(p.decay_input), MPS=bool(p.mps), SOFT=p.soft_reset,
                FIRST=bool(p.mps and p.mps_init == "first"))


def run_forward(x, v0, p: LIFParams, a, want_h: bool, want_vp: bool):
    T, N = x.shape
    s = torch.empty_like(x)
    hs = torch.empty(x.shape, device=x.device, dtype=torch.float32) if want_h else None
    vp = torch.empty(x.shape, device=x.device, dtype=torch.float32) if want_vp else None
    a32 = a.to(torch.float32).reshape(1)
    grid = (triton_cdiv(N, BLOCK),)
    _kernels().lif_fwd_kernel[grid](
        x, v0 if v0 is not None else x, a32, s, hs if hs is not None else s, vp if vp is not None else s,
        T, N, float(p.tau), float(p.v_threshold), p.vr, **_common(p), HAS_V0=v0 is not None,
        WANT_H=want_h, WANT_VP=want_vp, BLOCK=BLOCK, **_launch_opts())
    return s, hs, vp


def triton_cdiv(n: int, d: int) -> int:
    return max(1, -(-n // d))


def run_backward(x, v0, hs, gs, ghs, p: LIFParams, a):
    T, N = x.shape
    gx = torch.empty_like(x)
    grid = (triton_cdiv(N, BLOCK),)
    parts = torch.empty(grid[0], device=x.device, dtype=torch.float32)
    a32 = a.to(torch.float32).reshape(1)
    _kernels().lif_bwd_kernel[grid](
        x, v0 if v0 is not None else x, a32, hs, gs, ghs if ghs is not None else gs, gx, parts, T, N,
        float(p.tau), float(p.v_threshold), p.vr, p.k, p.c, float(p.surrogate_alpha), **_common(p),
        DETACH=bool(p.detach_reset), SURR=SURROGATE_CODE[p.surrogate], HAS_V0=v0 is not None,
        HAS_GH=ghs is not None, BLOCK=BLOCK, **_launch_opts())
    return gx, parts.to(torch.float64).sum()


class _Engine:
    name = "triton"

    @staticmethod
    def supports(x: torch.Tensor) -> bool:
        if x.dtype not in _DTYPES or not installed():
            return False
        return x.device.type == "cuda" or (x.device.type == "cpu" and interpreting())

    @staticmethod
    def forward(x, v0, p: LIFParams, a, want_h: bool, want_vp: bool):
        s, hs, vp = run_forward(x, v0, p, a, want_h or KEEP, want_vp)
        saved = [hs] if KEEP else []
        return s, hs if want_h else None, vp, saved

    @staticmethod
    def backward(x, v0, saved, gs, ghs, p: LIFParams, a):
        hs = saved[0] if saved else run_forward(x, v0, p, a, True, False)[1]
        return run_backward(x, v0, hs, gs, ghs, p, a)


ENGINE = _Engine()
