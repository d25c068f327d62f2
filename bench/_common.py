"""Helpers shared by the benchmarks: interleaved timing with medians, CPU peak memory, table printing.

The machines are noisy VMs: every benchmark interleaves the candidates round by round, in an order
shuffled every round with a fixed seed (so no candidate always runs right after the same other one,
whose cache, freed memory and spinning threads it would inherit), and reports medians, so a burst of
noise hits all alike.
"""
from __future__ import annotations

import json
import os
import random
import statistics
import tempfile
import time
from typing import Callable

import torch


def interleaved_medians(cands: dict[str, Callable[[], None]], rounds: int = 15, warmup: int = 2,
                        sync: Callable[[], None] | None = None,
                        before: Callable[[], None] | None = None) -> dict[str, float]:
    """Median wall time in seconds of each candidate, timed in interleaved rounds (shuffled order).

    ``before`` runs, untimed, ahead of every timed call (e.g. to put the caches in the same state).
    """
    times: dict[str, list[float]] = {k: [] for k in cands}
    names = list(cands)
    order = random.Random(0)
    for r in range(warmup + rounds):
        order.shuffle(names)
        for name in names:
            fn = cands[name]
            if before:
                before()
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
    """Peak bytes allocated on the CPU while ``fn`` runs: torch's allocator (torch.profiler memory
    events) plus the peak of chorus's warm-buffer cache (``chorus.neurons.buffers``), whose blocks the
    profiler does not see. The sum of the two peaks is an upper bound of the true peak."""
    from torch.profiler import ProfilerActivity, profile

    from chorus.neurons import buffers

    buffers.reset_peak()
    lent_before = buffers.stats()["lent"]
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    pool_peak = buffers.stats()["peak"] - lent_before
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    finally:
        os.unlink(path)
    # A running sum of this session's own allocation events: the events' "Total Allocated" is a
    # process-wide counter that keeps blocks allocated in an earlier profiling session and freed outside
    # one, so it drifts upwards from session to session.
    net, peak = 0, 0
    for e in sorted((e for e in events if e.get("name") == "[memory]"), key=lambda e: e.get("ts", 0)):
        net += e["args"]["Bytes"]
        peak = max(peak, net)
    return peak + pool_peak


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
