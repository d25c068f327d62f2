"""Warm output buffers for the CPU kernel: a small caching allocator for large float32 tensors.

torch's CPU allocator hands every large tensor back to the C library when it dies, and the C library
returns it to the operating system; the next step's tensor of the same size then pays a page fault
and a kernel zero-fill for every page before the kernel writes a single value. For a layer of 4M
neurons that is two or three fresh 16 MiB tensors per training step, a large share of the LIF's time
at small T. This module keeps freed blocks (like the CUDA caching allocator does on GPUs) and hands
them out again, already faulted in.

A block is lent as a tensor over a numpy view of it; when torch frees the tensor's storage the view
dies and a ``weakref.finalize`` puts the block back on its free list. Only blocks of at least
``MIN_BYTES`` are cached, and at most ``CHORUS_BUFFER_CACHE_MB`` (default 1024) MiB are kept idle;
beyond that freed blocks go back to the system; ``CHORUS_BUFFER_CACHE_MB=0`` turns the cache off
(plain ``torch.empty``). :func:`empty_cache` drops every idle block, :func:`stats` reports bytes lent
(current and peak) and idle, so a memory benchmark can count them. A lent tensor behaves like any
other except that its storage cannot grow (``resize_`` to more elements raises; ``clone()`` first).
"""
from __future__ import annotations

import collections
import ctypes
import os
import sys
import threading
import weakref

import numpy as np
import torch

MIN_BYTES = 1 << 20
_ALIGN = 64
_HUGE = 1 << 21
_MADV_HUGEPAGE = 14

_free: dict[int, collections.deque] = collections.defaultdict(collections.deque)
_lock = threading.RLock()  # re-entrant: a finalizer may run on this thread while it holds the lock
_lent = 0
_peak = 0
_idle = 0
_libc = None


def _limit() -> int:
    raw = os.environ.get("CHORUS_BUFFER_CACHE_MB", "1024")
    try:
        mb = float(raw)
    except ValueError:
        raise ValueError(f"CHORUS_BUFFER_CACHE_MB={raw!r} must be a number of MiB (0 turns the cache off)") from None
    return int(mb * 2**20)


def _advise_huge(addr: int, nbytes: int) -> None:
    """Ask for transparent huge pages on the 2 MiB-aligned interior (8 faults per 16 MiB, not 4096)."""
    global _libc
    if nbytes < 2 * _HUGE or not sys.platform.startswith("linux"):
        return
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    start = (addr + _HUGE - 1) & ~(_HUGE - 1)
    end = (addr + nbytes) & ~(_HUGE - 1)
    if end > start:
        _libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), _MADV_HUGEPAGE)


def _new_block(nbytes: int) -> np.ndarray:
    raw = np.empty(nbytes + _ALIGN, dtype=np.uint8)
    off = (-raw.ctypes.data) % _ALIGN
    block = raw[off:off + nbytes]
    _advise_huge(block.ctypes.data, nbytes)
    return block


def _give_back(nbytes: int, block: np.ndarray) -> None:
    global _lent, _idle
    with _lock:
        _lent -= nbytes
        if _idle + nbytes <= _limit():
            _free[nbytes].append(block)
            _idle += nbytes


def empty(shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """An uninitialised contiguous float32 CPU tensor of ``shape``, from the cache when large."""
    numel = 1
    for d in shape:
        numel *= int(d)
    nbytes = numel * 4
    if nbytes < MIN_BYTES or _limit() <= 0:
        return torch.empty(shape, dtype=torch.float32)
    global _lent, _peak, _idle
    with _lock:
        q = _free.get(nbytes)
        block = q.pop() if q else None
        if block is not None:
            _idle -= nbytes
        _lent += nbytes
        _peak = max(_peak, _lent)
    if block is None:
        block = _new_block(nbytes)
    view = block.view(np.float32)  # a new numpy object: its death means torch freed the tensor
    fin = weakref.finalize(view, _give_back, nbytes, block)
    fin.atexit = False
    return torch.from_numpy(view).view(shape)


def stats() -> dict[str, int]:
    """Bytes currently lent out, the peak since :func:`reset_peak`, and bytes kept idle."""
    with _lock:
        return {"lent": _lent, "peak": _peak, "idle": _idle}


def reset_peak() -> None:
    global _peak
    with _lock:
        _peak = _lent


def empty_cache() -> None:
    """Release every idle block to the system."""
    global _idle
    with _lock:
        _free.clear()
        _idle = 0
