"""``backend="auto"`` on the CPU: measure the float32 backends once on this machine, remember the winner.

For a setting of the neuron (:class:`chorus.neurons.recursion.Spec`) and a sequence length, every
candidate of :data:`chorus.neurons.backends.FAST` that can run here is first checked against the
``torch`` backend on a small input (equal spikes, gradients to fp32 rounding; a candidate that fails or
raises is out), then timed forward + backward on ``[T, 2**20]`` (median of a few rounds, compile time
excluded). The result is written to ``$CHORUS_CACHE/autotune/<key>.json``, the key naming the CPU model
and instruction set, the torch version, the thread count, the kernels' sources and the setting, so a
node of another CPU kind, another torch or changed kernels measures again. A file lock makes DDP ranks
on one machine measure once. Sequence lengths above ``recursion.BLOCK`` are measured at that length (the
backends then loop over blocks).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import statistics
import sys
import threading
import time
from functools import lru_cache
from pathlib import Path

import torch

from chorus.neurons import machine, recursion
from chorus.neurons.params import LIFParams

VERSION = 1
N_MEASURE = 1 << 20
ROUNDS = 3

_memo: dict[tuple, str] = {}
_lock = threading.Lock()


@lru_cache(maxsize=1)
def _sources_hash() -> str:
    here = Path(__file__).parent
    h = hashlib.sha256()
    for name in ("lif_kernel.c", "recursion.py", "fused.py", "cpu_kernel.py", "inductor.py"):
        try:
            h.update((here / name).read_bytes())
        except OSError:
            pass
    return h.hexdigest()[:12]


def _inductor_cpp() -> tuple:
    """Inductor's C++ target settings (simdlen, march), without importing Inductor just to read them."""
    if "torch._inductor.config" not in sys.modules:
        return None, os.environ.get("TORCHINDUCTOR_CPP_MARCH")
    cfg = sys.modules["torch._inductor.config"].cpp
    return cfg.simdlen, cfg.march


def key(p: LIFParams, T: int) -> dict:
    """Everything a measurement depends on (its file is named after the hash of this)."""
    simdlen, march = _inductor_cpp()
    return {"version": VERSION, "cpu": machine.cpu_key(), "cpu_model": machine.cpu_info()["model"],
            "isa": machine.isa_summary(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "sources": _sources_hash(), "spec": list(recursion.Spec.of(p)), "mps_init": p.mps_init,
            "T": min(int(T), recursion.BLOCK), "simdlen": simdlen, "march": march,
            "kernel_march": os.environ.get("CHORUS_KERNEL_MARCH"),
            "aten_cpu": os.environ.get("ATEN_CPU_CAPABILITY")}


def _path(k: dict) -> Path:
    digest = hashlib.sha256(json.dumps(k, sort_keys=True).encode()).hexdigest()[:20]
    return machine.cache_root() / "autotune" / f"{digest}.json"


def _run(name: str, x, g, p: LIFParams, alpha):
    from chorus.neurons.fused import lif_fused

    xi = x.detach().requires_grad_()
    ai = alpha.detach().requires_grad_()
    s = lif_fused(xi, ai, p, spikes_only=True, backend=name)[0]
    s.backward(g)
    return s.detach(), xi.grad, ai.grad


def _correct(name: str, p: LIFParams, T: int) -> bool:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(T, 4099, generator=gen) * 1.5 + 0.3
    g = torch.randn(x.shape, generator=gen)
    alpha = torch.tensor(0.6)
    ref = _run("torch", x, g, p, alpha)
    got = _run(name, x, g, p, alpha)
    if not torch.equal(ref[0], got[0]) or not torch.allclose(ref[1], got[1], rtol=1e-5, atol=1e-6):
        return False
    return not p.mps or torch.allclose(ref[2], got[2], rtol=1e-4, atol=1e-5)


def measure(p: LIFParams, T: int, n: int = N_MEASURE, rounds: int = ROUNDS, log=None) -> dict:
    """Check and time every candidate for ``p`` at sequence length ``T`` on ``[T, n]``.

    Returns ``{"times_ms": {name: ms}, "compile_s": {name: s}, "rejected": {name: why}, "choice": name}``.
    """
    from chorus.neurons import backends

    T = min(int(T), recursion.BLOCK)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(T, n, generator=gen) * 1.5 + 0.3
    g = torch.randn(x.shape, generator=gen)
    alpha = torch.tensor(0.5)
    times, compile_s, rejected = {}, {}, {}
    for name in backends.FAST:
        if not backends.supports(name, x):
            rejected[name] = "not available here"
            continue
        try:
            t0 = time.perf_counter()
            ok = _correct(name, p, T)
            _run(name, x, g, p, alpha)  # warm-up (compiles, faults pages in)
            compile_s[name] = round(time.perf_counter() - t0, 2)
            if not ok:
                rejected[name] = "disagrees with the torch backend"
                continue
            runs = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                _run(name, x, g, p, alpha)
                runs.append(time.perf_counter() - t0)
            times[name] = round(statistics.median(runs) * 1e3, 3)
        except Exception as exc:  # a backend that cannot build or run here is simply not chosen
            rejected[name] = f"{type(exc).__name__}: {str(exc)[:200]}"
        if log:
            log(f"  {name}: {times.get(name, rejected.get(name))}")
    choice = min(times, key=times.get) if times else "torch"
    return {"times_ms": times, "compile_s": compile_s, "rejected": rejected, "choice": choice}


@contextlib.contextmanager
def _file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(path.with_suffix(".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _read(path: Path) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def choice(p: LIFParams, T: int) -> str:
    """The backend ``auto`` runs for float32 CPU input with settings ``p`` and ``T`` timesteps."""
    memo_key = (recursion.Spec.of(p), p.mps_init, min(int(T), recursion.BLOCK), torch.get_num_threads(),
                *_inductor_cpp(), os.environ.get("CHORUS_KERNEL_MARCH"), os.environ.get("CHORUS_CACHE"))
    hit = _memo.get(memo_key)
    if hit is not None:
        return hit
    k = key(p, T)
    path = _path(k)
    with _lock:
        if memo_key not in _memo:
            rec = _read(path)
            if rec is None:
                with _file_lock(path):
                    rec = _read(path)  # another process may have measured while we waited
                    if rec is None:
                        print(f"chorus: measuring the LIF backends for {recursion.Spec.of(p)} at T={k['T']} "
                              f"(once per machine kind; cached in {path.parent})", file=sys.stderr, flush=True)
                        rec = {"key": k, **measure(p, T)}
                        tmp = path.with_suffix(f".{os.getpid()}.tmp")
                        tmp.write_text(json.dumps(rec, indent=1))
                        os.replace(tmp, path)
                        print(f"chorus: LIF backend for this setting: {rec['choice']} (ms: {rec['times_ms']})",
                              file=sys.stderr, flush=True)
            _memo[memo_key] = rec["choice"]
    return _memo[memo_key]
