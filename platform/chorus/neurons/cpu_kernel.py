"""Build, load and call the fused C kernel (``lif_kernel.c``) for float32 tensors on the CPU: the ``c``
backend (docs/method.md, "The spiking core"; the recursion it implements is written once in torch ops
in :mod:`chorus.neurons.recursion`).

The kernel is compiled once per machine kind with the system C compiler into a cache folder
(``$CHORUS_CACHE`` or ``~/.cache/chorus``, then ``kernels/``), keyed by the source, the flags, the
compiler's version and the CPU's model and instruction set (:func:`chorus.neurons.machine.cpu_key`), so
a shared home folder never hands an AVX-512 build to an AVX2 node; it is loaded with ctypes (which
releases the GIL during a call). ``-march=native`` is the default target; ``CHORUS_KERNEL_MARCH`` names
another (``znver3`` builds the AVX2 code of an AMD Zen3 host, e.g. to measure it elsewhere). A failed
compile is remembered for :data:`FAIL_TTL` seconds only (its compiler output beside the cache), then
tried again. It is built with ``-fopenmp`` when the compiler can: the
library then links ``libgomp.so.1``, which in a torch process resolves to torch's own OpenMP runtime,
and one call runs on torch's intra-op team (``torch.get_num_threads()`` threads, the same threads that
run the convolution before the neuron: awake, and never competing with it for cores). When that is
not the case (no OpenMP in the compiler, or a second OpenMP runtime got loaded), the neurons are split
over a small Python thread pool instead. If no compiler is available, :func:`available` is False and
the torch-ops path is used.
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
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from chorus.neurons import buffers, machine
from chorus.neurons.params import LIFParams
from chorus.neurons.surrogate import SURROGATE_CODE

_SRC = Path(__file__).with_name("lif_kernel.c")
# -fno-trapping-math: no FP exception is ever read, so GCC may if-convert the spike selects and the
# conditional α-sum; without it an AVX2 build (no AVX-512 masks) leaves 97 inner loops scalar (129 of
# 260 vectorised, gcc -fopt-info-vec), 4.5x slower than the AVX-512 build. It changes no result: no
# reassociation, no contraction (-ffp-contract=off), same rounding; the kernel tests check bit-equality.
_BASE_FLAGS = ["-O3", "-ffp-contract=off", "-fno-fast-math", "-fno-trapping-math", "-fPIC", "-shared", "-std=c99"]
FAIL_TTL = 3600.0
_OPENMP = ["-fopenmp"]
_SIMD_ONLY = ["-fopenmp-simd"]
_MIN_PER_THREAD = 1 << 15

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False
_use_team = False  # True: split over torch's OpenMP team inside the kernel; False: over _pool
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


class _Cfg(ctypes.Structure):
    _fields_ = [(n, ctypes.c_float) for n in ("tau", "vth", "vr", "k", "c", "alpha", "one_minus_alpha", "sa")] + [
        (n, ctypes.c_int) for n in ("decay_input", "mps", "soft", "detach", "surrogate", "first")
    ]


def _cache_dir() -> Path:
    return machine.cache_root() / "kernels"


def _flags() -> list[str]:
    march = os.environ.get("CHORUS_KERNEL_MARCH", "native")
    wide = ["-mprefer-vector-width=512"] if march == "native" else []
    return [*_BASE_FLAGS[:1], f"-march={march}", *wide, *_BASE_FLAGS[1:]]


def _compiler_id(cc: str) -> str:
    try:
        res = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
        return cc + "\n" + (res.stdout.splitlines() or [""])[0]
    except (OSError, subprocess.SubprocessError):
        return cc


def build_key(cc: str, flags: list[str]) -> str:
    """The cache key of one build: source, flags, compiler version, CPU model and instruction set."""
    raw = b"\n".join([_SRC.read_bytes(), " ".join(flags).encode(), _compiler_id(cc).encode(),
                      machine.cpu_key().encode()])
    return hashlib.sha256(raw).hexdigest()[:16]


def _compile(cc: str, flags: list[str]) -> Path | None:
    """Compile the kernel with ``flags`` into the cache (once per :func:`build_key`); None on failure.

    A failure leaves ``lif_kernel-KEY.failed`` (the compiler's output) that stops retries for
    :data:`FAIL_TTL` seconds; after that the next process tries again."""
    key = build_key(cc, flags)
    out = _cache_dir() / f"lif_kernel-{key}.so"
    failed = out.with_suffix(".failed")
    if out.exists():
        return out
    try:
        if time.time() - failed.stat().st_mtime < FAIL_TTL:
            return None
    except OSError:
        pass
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
    os.close(fd)
    res = subprocess.run([cc, *flags, str(_SRC), "-o", tmp, "-lm"], capture_output=True, text=True)
    if res.returncode != 0:
        os.unlink(tmp)
        failed.write_text(res.stderr)
        return None
    failed.unlink(missing_ok=True)
    os.replace(tmp, out)  # atomic: concurrent builders never load a half-written file
    return out


def _omp_entry(handle: ctypes.CDLL) -> int | None:
    """Address that ``omp_get_num_threads`` resolves to from ``handle`` (its own dependency tree)."""
    try:
        return ctypes.cast(handle.omp_get_num_threads, ctypes.c_void_p).value
    except AttributeError:
        return None


def _shares_torch_openmp(lib: ctypes.CDLL) -> bool:
    """True when the kernel's OpenMP runtime is the very one torch's ops run on (same function address)."""
    try:
        torch_entry = _omp_entry(ctypes.CDLL(torch._C.__file__))
    except OSError:
        return False
    return torch_entry is not None and _omp_entry(lib) == torch_entry


def _load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    i64, i32, fp, cfgp = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(_Cfg)
    dp = ctypes.POINTER(ctypes.c_double)
    lib.lif_forward.argtypes = [fp, fp, fp, fp, fp, i64, i64, i64, i64, cfgp]
    lib.lif_forward.restype = None
    lib.lif_backward.argtypes = [fp, fp, fp, fp, fp, i64, i64, i64, i64, cfgp, dp]
    lib.lif_backward.restype = ctypes.c_int
    lib.lif_forward_par.argtypes = [fp, fp, fp, fp, fp, i64, i64, i32, cfgp]
    lib.lif_forward_par.restype = None
    lib.lif_backward_par.argtypes = [fp, fp, fp, fp, fp, i64, i64, i32, cfgp, dp]
    lib.lif_backward_par.restype = ctypes.c_int
    lib.lif_has_openmp.argtypes = []
    lib.lif_has_openmp.restype = ctypes.c_int
    return lib


def _build() -> ctypes.CDLL | None:
    global _use_team
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    flags = _flags()
    if torch.backends.openmp.is_available():
        path = _compile(cc, flags + _OPENMP)
        if path is not None:
            lib = _load(path)
            if lib.lif_has_openmp() and _shares_torch_openmp(lib):
                _use_team = True
                return lib
    path = _compile(cc, flags + _SIMD_ONLY)
    if path is None:
        print(f"chorus: could not compile the fused LIF kernel (compiler output in {_cache_dir()}/*.failed; "
              f"retried after {FAIL_TTL / 3600:g} h, or delete those files); using another backend",
              file=sys.stderr)
        return None
    return _load(path)


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
                print(f"chorus: fused LIF kernel unavailable ({exc}); using another backend", file=sys.stderr)
                _lib = None
    return _lib is not None


def _cfg(p: LIFParams, alpha: float, one_minus_alpha: float) -> _Cfg:
    return _Cfg(p.tau, p.v_threshold, p.vr, p.k, p.c, alpha, one_minus_alpha, p.surrogate_alpha,
                int(p.decay_input), int(p.mps), int(p.soft_reset), int(p.detach_reset),
                SURROGATE_CODE[p.surrogate], int(p.mps_init == "first"))


def _threads(n: int) -> int:
    return max(1, min(torch.get_num_threads(), n // _MIN_PER_THREAD))


def _ranges(n: int) -> list[tuple[int, int]]:
    """The pool path's split: as many slices as :func:`_threads`, aligned to 64 neurons (like the kernel's)."""
    threads = _threads(n)
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


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def forward(x: torch.Tensor, v0: torch.Tensor | None, p: LIFParams, alpha: float, oma: float,
            want_h: bool, want_vprev: bool):
    """x: float32 contiguous [T, N]. Returns (spikes, H~ or None, V(t-1) or None)."""
    T, N = x.shape
    s = buffers.empty(x.shape)
    hs = buffers.empty(x.shape) if want_h else None
    vp = buffers.empty(x.shape) if want_vprev else None
    cp = ctypes.byref(_cfg(p, alpha, oma))
    args = (_ptr(x), _ptr(v0), _ptr(s), _ptr(hs), _ptr(vp), T, N)
    if _use_team:
        _lib.lif_forward_par(*args, _threads(N), cp)
    else:
        _map(lambda a, b: _lib.lif_forward(*args, a, b, cp), _ranges(N))
    return s, hs, vp


def backward(x: torch.Tensor, v0: torch.Tensor | None, gs: torch.Tensor, ghs: torch.Tensor | None,
             p: LIFParams, alpha: float, oma: float):
    """The backward from the input ``x`` (and ``v0``): H~ and H are recomputed inside the kernel.

    gs = ∂L/∂S, ghs = ∂L/∂H~ (or None): float32 contiguous [T, N]. Returns (∂L/∂X, Σ g(t)·(H~(t−1) − H(t))),
    g(t) being the total ∂L/∂H~(t), i.e. (∂L/∂X, ∂L/∂α).
    """
    T, N = x.shape
    gx = buffers.empty(x.shape)
    cp = ctypes.byref(_cfg(p, alpha, oma))
    args = (_ptr(x), _ptr(v0), _ptr(gs), _ptr(ghs), _ptr(gx), T, N)

    def part(*split) -> float:
        out = ctypes.c_double(0.0)
        fn = _lib.lif_backward_par if _use_team else _lib.lif_backward
        if fn(*args, *split, cp, ctypes.byref(out)):
            raise MemoryError("the fused LIF backward could not allocate its per-thread scratch buffer")
        return out.value

    if _use_team:
        return gx, part(_threads(N))
    return gx, float(sum(_map(part, _ranges(N))))


class Engine:
    """The ``c`` backend for :class:`chorus.neurons.fused.FusedLIF` (float32 CPU tensors only)."""

    name = "c"

    @staticmethod
    def supports(x: torch.Tensor) -> bool:
        return x.device.type == "cpu" and x.dtype == torch.float32 and available()

    @staticmethod
    def forward(x, v0, p: LIFParams, a: torch.Tensor, want_h: bool, want_vp: bool):
        af = float(a)
        s, hs, vp = forward(x, v0, p, af, float(1 - a), want_h, want_vp)
        return s, hs, vp, []

    @staticmethod
    def backward(x, v0, saved, gs, ghs, p: LIFParams, a: torch.Tensor):
        gx, acc = backward(x, v0, gs, ghs, p, float(a), float(1 - a))
        return gx, torch.tensor(acc, dtype=torch.float64)
