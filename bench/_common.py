"""Helpers shared by the benchmarks: interleaved timing with medians, CPU peak memory, table printing.

The machines are noisy VMs: every benchmark interleaves the candidates round by round and reports
medians, so a burst of noise hits all candidates alike.
"""
from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from typing import Callable

import torch


def interleaved_medians(cands: dict[str, Callable[[], None]], rounds: int = 15, warmup: int = 2,
                        sync: Callable[[], None] | None = None) -> dict[str, float]:
    """Median wall time in seconds of each candidate, timed in interleaved rounds."""
    times: dict[str, list[float]] = {k: [] for k in cands}
    for r in range(warmup + rounds):
        for name, fn in cands.items():
            if sync:
                sync()
            t0 = time.perf_counter()
            fn()
            if sync:
                sync()
            if r >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def cpu_peak_bytes(fn: Callable[[], None]) -> int:
    """Peak bytes allocated by torch on the CPU while ``fn`` runs (torch.profiler memory events)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    finally:
        os.unlink(path)
    totals = [e["args"]["Total Allocated"] for e in events if e.get("name") == "[memory]"]
    return max(totals) if totals else 0


def saved_tensor_bytes(fn_forward: Callable[[], torch.Tensor]) -> int:
    """Bytes autograd keeps from the forward for the backward (unique storages)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        st = t.untyped_storage()
        seen[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn_forward()
    del out
    return sum(seen.values())


def print_table(header: list[str], rows: list[list]) -> None:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]
    line = "  ".join(str(h).rjust(w) for h, w in zip(header, widths))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(str(c).rjust(w) for c, w in zip(r, widths)))
