"""The ``inductor`` backend: the blocks of :mod:`chorus.neurons.recursion` compiled by ``torch.compile``.

Inductor fuses one block (at most ``recursion.BLOCK`` timesteps, unrolled) into a single vectorised
loop over the neurons: C++/OpenMP on the CPU, Triton on CUDA (docs/method.md, "The spiking core"; the
recursion is the same Python code the ``torch`` backend runs eagerly). Compiled blocks are

- dynamic in the neuron count: one compiled block serves every layer shape (no recompile per layer);
- specialised on the settings that change the computation (:class:`recursion.Spec`), on the block
  length K and on which outputs are wanted; each such variant gets a code object of its own, so Dynamo
  keeps one small cache per variant and its recompile limit is never reached by many layers/settings;
- cached on disk by Inductor (FX graph cache and compiled libraries) in
  ``$CHORUS_CACHE/inductor/<torch version>-<CPU key>[-simd<bits>]`` (:mod:`chorus.neurons.machine`), unless
  ``TORCHINDUCTOR_CACHE_DIR`` is set; a second process or a second DDP rank on the same machine kind
  loads them instead of compiling (the benchmark prints both costs).

``torch._inductor.config.cpp.simdlen = 256`` with ``cpp.march = "znver3"`` (or ``ATEN_CPU_CAPABILITY=avx2``)
builds the AVX2 code of an AMD Zen3 host on an AVX-512 machine; the cache key records both.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import types

import torch

from chorus.neurons import machine, recursion
from chorus.neurons.fused import BlockEngine

_lock = threading.Lock()
_compiled: dict[tuple, object] = {}


def cache_dir() -> str:
    """Where this machine kind's compiled blocks live (``$TORCHINDUCTOR_CACHE_DIR`` if the user set one)."""
    cfg = torch._inductor.config.cpp
    tag = f"{torch.__version__}-{machine.cpu_key()}"
    if cfg.simdlen:
        tag += f"-simd{cfg.simdlen}"
    if cfg.march:
        tag += f"-{cfg.march}"
    cap = os.environ.get("ATEN_CPU_CAPABILITY")
    if cap:
        tag += f"-{cap}"
    return str(machine.cache_root() / "inductor" / tag)


@contextlib.contextmanager
def _cache_env():
    """Point Inductor at chorus's cache for the duration of a call (compiles happen inside calls)."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    old = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if old is not None and os.path.abspath(old) != os.path.abspath(default_cache_dir()):
        yield  # the user chose a cache folder: use theirs
        return
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache_dir()
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
        else:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = old


def _own_code(fn, name: str):
    """A copy of ``fn`` with a code object of its own: Dynamo keeps its compiled entries per code object."""
    code = fn.__code__.replace(co_name=name)
    return types.FunctionType(code, fn.__globals__, name, fn.__defaults__, fn.__closure__)


def _variant(kind: str, spec: recursion.Spec, K: int, flag: bool, carry: bool):
    key = (kind, spec, K, flag, carry)
    fn = _compiled.get(key)
    if fn is not None:
        return fn
    with _lock:
        fn = _compiled.get(key)
        if fn is None:
            base = recursion.forward_block if kind == "fwd" else recursion.backward_block
            # a name fixed by the variant (not by the order of first use): Inductor's disk cache keys
            # on the traced graph, which carries it
            tag = hashlib.sha256(repr(key).encode()).hexdigest()[:12]
            name = f"chorus_lif_{kind}_{tag}"
            fn = torch.compile(_own_code(base, name), dynamic=True, fullgraph=True)
            _compiled[key] = fn
    return fn


def _plain(t: torch.Tensor | None) -> torch.Tensor | None:
    """``t`` as a tensor of its own (same memory, no ``_base``). Dynamo traces a view together with its
    base, so the compiled graph, and Inductor's disk-cache key with it, would depend on the shape of
    whatever the layer's input was a view of; this way every caller hits the same cache entry."""
    if t is None or t._base is None:
        return t
    out = torch.empty(0, dtype=t.dtype, device=t.device)
    return out.set_(t.untyped_storage(), t.storage_offset(), t.size(), t.stride())


def _fwd(spec, K, want_states, carry):
    fn = _variant("fwd", spec, K, want_states, carry)

    def run(f, x, v, hs, a, oma, first):
        with _cache_env():
            return fn(spec, f, _plain(x), _plain(v), _plain(hs), a, oma, first, want_states, carry)
    return run


def _bwd(spec, K, has_gh, carry):
    fn = _variant("bwd", spec, K, has_gh, carry)

    def run(f, x, gs, ghs, v, hs, gv, g_next, a, oma, first):
        with _cache_env():
            return fn(spec, f, _plain(x), _plain(gs), _plain(ghs), _plain(v), _plain(hs), _plain(gv),
                      _plain(g_next), a, oma, first, carry)
    return run


class _Engine(BlockEngine):
    @staticmethod
    def supports(x: torch.Tensor) -> bool:
        return x.device.type in ("cpu", "cuda") and x.dtype in (torch.float32, torch.float64)


ENGINE = _Engine("inductor", _fwd, _bwd, tensor_first=True)


def compiled_variants() -> int:
    """How many block variants this process has asked Inductor for (for the benchmark's report)."""
    return len(_compiled)
