"""Build, load and call the fused C kernel (``lif_kernel.c``) for float32 tensors on the CPU.

The kernel is compiled once per machine with the system C compiler into a cache folder
(``$CHORUS_CACHE`` or ``~/.cache/chorus``), keyed by the source's hash, and loaded with ctypes.
Work is split over neurons across ``torch.get_num_threads()`` threads (ctypes releases the GIL).
If no compiler is available, :func:`available` is False and the torch-ops path is used instead.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from chorus.neurons.params import LIFParams
from chorus.neurons.surrogate import SURROGATE_CODE

_SRC = Path(__file__).with_name("lif_kernel.c")
_FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-fast-math", "-fPIC", "-shared", "-std=c99", "-fopenmp-simd"]
_MIN_PER_THREAD = 1 << 15

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


class _Cfg(ctypes.Structure):
    _fields_ = [(n, ctypes.c_float) for n in ("tau", "vth", "vr", "k", "c", "alpha", "one_minus_alpha", "sa")] + [
        (n, ctypes.c_int) for n in ("decay_input", "mps", "soft", "detach", "surrogate")
    ]


def _cache_dir() -> Path:
    root = os.environ.get("CHORUS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "chorus")
    return Path(root) / "kernels"


def _build() -> ctypes.CDLL | None:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    src = _SRC.read_bytes()
    key = hashlib.sha256(src + " ".join(_FLAGS).encode() + os.uname().machine.encode()).hexdigest()[:16]
    out = _cache_dir() / f"lif_kernel-{key}.so"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
        os.close(fd)
        res = subprocess.run([cc, *_FLAGS, str(_SRC), "-o", tmp, "-lm"], capture_output=True, text=True)
        if res.returncode != 0:
            os.unlink(tmp)
            print(f"chorus: could not compile the fused LIF kernel ({res.stderr.strip()[:500]}); "
                  "using the torch-ops path", file=sys.stderr)
            return None
        os.replace(tmp, out)  # atomic: concurrent builders never load a half-written file
    lib = ctypes.CDLL(str(out))
    i64, fp, cfgp = ctypes.c_int64, ctypes.c_void_p, ctypes.POINTER(_Cfg)
    lib.lif_forward.argtypes = [fp, fp, fp, fp, fp, i64, i64, i64, i64, cfgp]
    lib.lif_forward.restype = None
    lib.lif_backward.argtypes = [fp, fp, fp, fp, i64, i64, i64, i64, cfgp]
    lib.lif_backward.restype = ctypes.c_double
    return lib


def available() -> bool:
    """True when the C kernel is compiled and loaded (compiling it on first call)."""
    global _lib, _tried
    if os.environ.get("CHORUS_DISABLE_KERNEL"):
        return False
    with _lock:
        if not _tried:
            _tried = True
            try:
                _lib = _build()
            except OSError as exc:  # no compiler, read-only cache, ...
                print(f"chorus: fused LIF kernel unavailable ({exc}); using the torch-ops path", file=sys.stderr)
                _lib = None
    return _lib is not None


def _cfg(p: LIFParams, alpha: float, one_minus_alpha: float) -> _Cfg:
    return _Cfg(p.tau, p.v_threshold, p.vr, p.k, p.c, alpha, one_minus_alpha, p.surrogate_alpha,
                int(p.decay_input), int(p.mps), int(p.soft_reset), int(p.detach_reset),
                SURROGATE_CODE[p.surrogate])


def _ranges(n: int) -> list[tuple[int, int]]:
    threads = max(1, min(torch.get_num_threads(), n // _MIN_PER_THREAD))
    step = -(-n // threads)
    step = -(-step // 64) * 64  # keep chunks aligned to cache lines
    return [(a, min(n, a + step)) for a in range(0, n, step)]


def _map(fn, ranges):
    global _pool, _pool_size
    if len(ranges) == 1:
        return [fn(*ranges[0])]
    with _lock:
        if _pool is None or _pool_size < len(ranges):
            _pool = ThreadPoolExecutor(max_workers=len(ranges), thread_name_prefix="chorus-lif")
            _pool_size = len(ranges)
    return list(_pool.map(lambda r: fn(*r), ranges))


_HUGE = 1 << 21
_MADV_HUGEPAGE = 14
_libc = None


def _empty(like: torch.Tensor) -> torch.Tensor:
    """``torch.empty_like`` whose 2 MiB-aligned interior is advised onto transparent huge pages: the
    first touch of a fresh 16 MiB output then costs 8 page faults instead of 4096."""
    global _libc
    t = torch.empty_like(like)
    nbytes = t.numel() * t.element_size()
    if nbytes >= 2 * _HUGE and sys.platform.startswith("linux"):
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        start = (t.data_ptr() + _HUGE - 1) & ~(_HUGE - 1)
        end = (t.data_ptr() + nbytes) & ~(_HUGE - 1)
        if end > start:
            _libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), _MADV_HUGEPAGE)
    return t


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def forward(x: torch.Tensor, v0: torch.Tensor | None, p: LIFParams, alpha: float, oma: float,
            want_vprev: bool):
    """x: float32 contiguous [T, N]. Returns (spikes, h_tilde, v_prev or None)."""
    T, N = x.shape
    s = _empty(x)
    hs = _empty(x)
    vp = _empty(x) if want_vprev else None
    cfg = _cfg(p, alpha, oma)
    cp = ctypes.byref(cfg)
    _map(lambda a, b: _lib.lif_forward(_ptr(x), _ptr(v0), _ptr(s), _ptr(hs), _ptr(vp), T, N, a, b, cp),
         _ranges(N))
    return s, hs, vp


def backward(gs: torch.Tensor, ghs: torch.Tensor | None, hs: torch.Tensor, p: LIFParams, alpha: float,
             oma: float):
    """gs = ∂L/∂S, ghs = ∂L/∂H~ (or None), hs = H~: float32 contiguous [T, N].

    Returns (∂L/∂X, Σ g(t)·(H~(t) − H~(t−1))), g(t) being the total ∂L/∂H~(t).
    """
    T, N = hs.shape
    gx = _empty(hs)
    cfg = _cfg(p, alpha, oma)
    cp = ctypes.byref(cfg)
    parts = _map(lambda a, b: _lib.lif_backward(_ptr(gs), _ptr(ghs), _ptr(hs), _ptr(gx), T, N, a, b, cp), _ranges(N))
    return gx, float(sum(parts))
