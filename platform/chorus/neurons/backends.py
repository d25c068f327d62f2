"""The LIF backends by name, and ``auto``, which picks the fastest correct one for a tensor on this machine.

All backends compute the same equations (docs/method.md, "The spiking core") and are tested against
the plain loop of :mod:`chorus.neurons.reference`:

=============  ==============================================================================
``reference``  the plain per-timestep autograd loop (the readable definition; slow on purpose)
``torch``      the fused recursion of :mod:`chorus.neurons.recursion` in eager torch ops (any device
               and dtype; float64 for gradcheck)
``inductor``   the same recursion compiled by ``torch.compile`` (C++ on the CPU, Triton on CUDA)
``c``          the hand-written C kernel (float32 on the CPU)
``triton``     hand-written Triton kernels (CUDA; on the CPU only under ``TRITON_INTERPRET=1``)
``auto``       CUDA: ``triton`` when Triton is installed, else ``torch``; float32 on the CPU: whichever
               of ``c`` / ``inductor`` / ``torch`` measured fastest (and correct) on this machine
               (:mod:`chorus.neurons.autotune`, measured once and cached on disk); else ``torch``
=============  ==============================================================================

``fused`` is an old name of ``auto``. ``CHORUS_LIF_BACKEND=NAME`` pins what ``auto`` picks (a name that
cannot run the tensor at hand is skipped), e.g. to keep compilers out of a test run.
"""
from __future__ import annotations

import os

import torch

from chorus.neurons.params import LIFParams

BACKENDS = ("auto", "reference", "torch", "inductor", "c", "triton")
ALIASES = {"fused": "auto"}
FAST = ("c", "inductor", "torch")  # what ``auto`` chooses from for float32 on the CPU


def canonical(name: str) -> str:
    """The backend's canonical name; a ``ValueError`` naming the known ones for anything else."""
    name = ALIASES.get(name, name)
    if name not in BACKENDS:
        known = ", ".join(BACKENDS + tuple(ALIASES))
        raise ValueError(f"backend={name!r} is not known; choose one of {known}")
    return name


def _get(name: str):
    if name == "torch":
        from chorus.neurons.fused import TORCH_ENGINE

        return TORCH_ENGINE
    if name == "c":
        from chorus.neurons.cpu_kernel import Engine

        return Engine
    if name == "inductor":
        from chorus.neurons.inductor import ENGINE

        return ENGINE
    if name == "triton":
        from chorus.neurons import triton_lif

        return triton_lif.ENGINE
    raise ValueError(f"backend {name!r} has no fused engine")


def supports(name: str, x: torch.Tensor) -> bool:
    """Whether backend ``name`` can run the [T, N] tensor ``x`` here (compiler present, right device...)."""
    if name == "torch":
        return True
    try:
        return bool(_get(name).supports(x))
    except ImportError:
        return False


_WHY = {
    "c": "float32 tensors on the CPU with a working C compiler",
    "inductor": "float32/float64 tensors on the CPU or CUDA",
    "triton": "CUDA tensors with Triton installed (or CPU tensors under TRITON_INTERPRET=1)",
}


def _auto(x: torch.Tensor, p: LIFParams) -> str:
    pinned = os.environ.get("CHORUS_LIF_BACKEND")
    if pinned:
        pinned = canonical(pinned)
        if pinned not in ("auto", "reference") and supports(pinned, x):
            return pinned
    if x.device.type == "cuda":
        return "triton" if supports("triton", x) else "torch"
    if x.device.type == "cpu" and x.dtype == torch.float32:
        from chorus.neurons import autotune

        picked = autotune.choice(p, x.shape[0])  # may come from the disk cache: check it runs here
        return picked if supports(picked, x) else "torch"
    return "torch"


def resolve(name: str, x: torch.Tensor, p: LIFParams) -> str:
    """The backend that runs ``x`` ([T, N]) when ``name`` is asked for."""
    name = canonical(name)
    if name == "auto":
        return _auto(x, p)
    if name != "reference" and not supports(name, x):
        raise ValueError(f"backend={name!r} runs {_WHY.get(name, 'other tensors')}; got a {x.dtype} tensor "
                         f"on {x.device}" + (" (no working C compiler here)" if name == "c" else "")
                         + "; use backend='auto'")
    return name


def engine(name: str, x: torch.Tensor, p: LIFParams):
    """The engine object :class:`chorus.neurons.fused.FusedLIF` runs for ``x`` under backend ``name``."""
    resolved = resolve(name, x, p)
    if resolved == "reference":
        raise ValueError("backend='reference' is the plain autograd loop (chorus.neurons.lif_reference), not a fused engine")
    return _get(resolved)
