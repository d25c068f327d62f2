"""What machine compiled code runs on, and where chorus caches what it compiles or measures there.

Compiled kernels (the C kernel, Inductor's C++ blocks) are built for the instruction set of the CPU
they are compiled on. On a cluster whose nodes share one home folder but differ in CPU, a kernel built
on an AVX-512 node dies with SIGILL on an AVX2 node if the cache is keyed by ``uname -m`` alone, so every
cache key here holds :func:`cpu_key`: the CPU model and its full instruction-set flags.
"""
from __future__ import annotations

import hashlib
import os
import platform
from functools import lru_cache
from pathlib import Path


def cache_root() -> Path:
    """``$CHORUS_CACHE``, else ``~/.cache/chorus``."""
    root = os.environ.get("CHORUS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "chorus")
    return Path(root)


@lru_cache(maxsize=1)
def cpu_info() -> dict[str, str]:
    """``{"machine", "model", "flags"}`` of this CPU (flags sorted, space-separated; from /proc/cpuinfo
    on Linux, otherwise what :mod:`platform` knows)."""
    model, flags = "", ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model", "cpu model") and not model:
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = " ".join(sorted(value.split()))
                if model and flags:
                    break
    except OSError:
        pass
    model = model or platform.processor() or ""
    return {"machine": platform.machine(), "model": model, "flags": flags}


def isa_summary() -> str:
    """A short name of the widest vector extension present: ``avx512``, ``avx2``, ``neon``, ... ."""
    flags = set(cpu_info()["flags"].split())
    for name, flag in (("avx512", "avx512f"), ("avx2", "avx2"), ("avx", "avx"), ("sve", "sve"),
                       ("neon", "asimd")):
        if flag in flags:
            return name
    return platform.machine() or "unknown"


@lru_cache(maxsize=1)
def cpu_key() -> str:
    """16 hex digits naming this CPU's model and instruction set (equal on identical nodes only)."""
    info = cpu_info()
    raw = "\n".join((info["machine"], info["model"], info["flags"]))
    return hashlib.sha256(raw.encode()).hexdigest()[:16]
