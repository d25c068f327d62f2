"""Part (b) of bench/gpu_check.py: one LIF layer, forward + backward, chorus backends vs SpikingJelly.

On ``[T, 16, 64, 32, 32]`` fp32 (T = 4 and 16; ``[T, 2, 4, 8, 8]`` in a dry run): chorus MPS on
(docs/method.md, "The spiking core") through every backend that runs the device (Triton also with H~
recomputed in the backward instead of kept, :data:`chorus.neurons.triton_lif.KEEP`) and through
``auto``, chorus MPS off (``auto``), and SpikingJelly's ``LIFNode(step_mode="m")``, which on CUDA
dispatches to its own fused kernels (the implementation it picked is recorded). Median time over
interleaved rounds (``_common.interleaved_medians``), CUDA peak memory, ratio = SpikingJelly / chorus.
"""
from __future__ import annotations

import contextlib
import time

import torch

from _common import interleaved_medians

SJ = "spikingjelly LIFNode"


def peer(device: str):
    """SpikingJelly's multi-step LIFNode as a function of x, and the implementation it runs on ``device``."""
    from spikingjelly.activation_based import functional, neuron

    sj = neuron.LIFNode(step_mode="m").to(device)

    def fn(x):
        sj.reset()
        return sj(x)

    try:
        impl = functional.neuron_implementation("lif", torch.device(device))["implementation"]
    except Exception as exc:  # older SpikingJelly: no such query
        impl = f"unknown ({type(exc).__name__})"
    return fn, impl


@contextlib.contextmanager
def _triton_keep(keep: bool):
    from chorus.neurons import triton_lif

    old, triton_lif.KEEP = triton_lif.KEEP, keep
    try:
        yield
    finally:
        triton_lif.KEEP = old


def chorus_cands(device: str, dry_run: bool, probe: torch.Tensor) -> tuple[dict, dict]:
    """``({label: fn(x)}, {backend: why skipped})``."""
    from chorus.neurons import LIF, backends

    cands, skipped = {}, {}
    for name in ("triton", "inductor", "torch", "c"):
        if dry_run and name == "triton":
            skipped[name] = "dry run: Triton's interpreter is for exactness, not speed"
        elif dry_run and name == "inductor":
            skipped[name] = "dry run: compile cost on the CPU"
        elif not backends.supports(name, probe):
            skipped[name] = f"does not run {device} tensors here"
        else:
            cands[f"chorus MPS on [{name}]"] = LIF(mps=True, backend=name).to(device)
    if "chorus MPS on [triton]" in cands:
        lif = cands["chorus MPS on [triton]"]

        def recompute(x, lif=lif):
            with _triton_keep(False):
                return lif(x)

        cands["chorus MPS on [triton, recompute H~]"] = recompute
    cands["chorus MPS on [auto]"] = LIF(mps=True).to(device)
    cands["chorus MPS off [auto]"] = LIF().to(device)
    return cands, skipped


def _step(fn, x, g):
    def run():
        xi = x.detach().requires_grad_()
        fn(xi).backward(g)
    return run


def _peak(run) -> int:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    run()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def run(device: str, dry_run: bool, deadline: float, timesteps=(4, 16)) -> dict:
    cuda = device == "cuda"
    sync = torch.cuda.synchronize if cuda else None
    rounds = 2 if dry_run else 25
    probe = torch.zeros(2, 1, device=device)
    out = {"ran": True, "rows": [], "skipped": {}, "peer_implementation": None}
    try:
        sj_fn, out["peer_implementation"] = peer(device)
    except ImportError:
        sj_fn = None
        out["skipped"][SJ] = "spikingjelly is not installed"
    chorus, why = chorus_cands(device, dry_run, probe)
    out["skipped"].update(why)
    for T in timesteps:
        if time.time() > deadline:
            out["skipped"][f"T={T}"] = "time budget spent"
            continue
        shape = (T, 2, 4, 8, 8) if dry_run else (T, 16, 64, 32, 32)
        gen = torch.Generator().manual_seed(T)
        x = (torch.randn(shape, generator=gen) * 1.5 + 0.3).to(device)
        g = torch.randn(shape, generator=gen).to(device)
        cands = dict(chorus)
        if sj_fn is not None:
            cands[SJ] = sj_fn
        steps = {k: _step(f, x, g) for k, f in cands.items()}
        first = {}
        for k, s in list(steps.items()):  # first use (compiles, builds, warms caches), untimed by the medians
            t0 = time.perf_counter()
            try:
                s()
                if sync:
                    sync()
            except Exception as exc:  # a candidate that cannot run here drops out, the others go on
                out["skipped"][f"{k} T={T}"] = f"raised {type(exc).__name__}: {str(exc)[:300]}"
                del steps[k]
                continue
            first[k] = time.perf_counter() - t0
        med = interleaved_medians(steps, rounds=rounds, warmup=1, sync=sync)
        peak = {k: _peak(s) for k, s in steps.items()} if cuda else {}
        ref = med.get(SJ)
        for k, t in med.items():
            out["rows"].append({
                "T": T, "shape": list(shape), "candidate": k, "median_ms": round(t * 1e3, 4),
                "first_use_s": round(first[k], 3), "peak_mib": round(peak[k] / 2**20, 1) if k in peak else None,
                "speed_vs_sj": round(ref / t, 3) if ref else None,
                "peak_vs_sj": round(peak[k] / peak[SJ], 3) if k in peak and SJ in peak and peak[SJ] else None})
    return out
