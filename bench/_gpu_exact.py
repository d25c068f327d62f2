"""Part (a) of bench/gpu_check.py: the fused LIF backends against the plain per-timestep reference.

The reference is :func:`chorus.neurons.lif_reference`, the readable loop of the equations in
docs/method.md, "The spiking core". For each backend and setting (both ``mps_init`` values, hard reset
to 0 and to −0.3, soft reset, the three surrogates, α up to 0.95), the same input goes through both on
the same device (a spike rate strictly between 0 and 1, or the entry fails): spikes must be identical, ∂L/∂X equal to fp32 rounding (rtol 1e-5, atol 1e-6) and,
with MPS, ∂L/∂α to rtol 2e-4, atol 1e-5 (the tolerances of tests/test_neurons_triton.py). On CUDA
also bf16 autocast (membrane kept in fp32: spikes equal to the fp32 run on the bf16-rounded input).
"""
from __future__ import annotations

import time

import torch

from chorus.neurons import LIF, backends, lif_fused, lif_reference, make_params

# (label, make_params keywords, α)
SETTINGS = [
    ("hard0-sigmoid-mps-first", dict(mps=True, mps_init="first"), 0.4),
    ("hard0-sigmoid-mps-zero", dict(mps=True, mps_init="zero"), 0.4),
    ("soft-atan-nodecay-detach-mps-first", dict(v_reset=None, surrogate="atan", decay_input=False,
                                                detach_reset=True, mps=True, mps_init="first"), 0.6),
    ("soft-atan-nodecay-detach-mps-zero", dict(v_reset=None, surrogate="atan", decay_input=False,
                                               detach_reset=True, mps=True, mps_init="zero"), 0.6),
    ("hard-0.3-rect-tau3-mps-first-a0.95", dict(v_reset=-0.3, surrogate="rect", tau=3.0, mps=True,
                                                 mps_init="first"), 0.95),
    ("hard-0.3-rect-tau3-mps-zero-a0.95", dict(v_reset=-0.3, surrogate="rect", tau=3.0, mps=True,
                                                mps_init="zero"), 0.95),
    ("hard0-sigmoid-nomps", dict(), 0.4),
    ("soft-atan-nomps", dict(v_reset=None, surrogate="atan"), 0.4),
]
# Inductor compiles one kernel per setting (tens of seconds each): on the GPU it gets the first two
# settings (both mps_init), the rest of the grid is tests/test_neurons_inductor.py's.
INDUCTOR_SETTINGS = 2


def _run(fn, x, g, alpha):
    xi = x.detach().clone().requires_grad_()
    a = torch.tensor(alpha, device=x.device, requires_grad=True)
    s = fn(xi, a)
    (s * g).sum().backward()
    return s.detach(), xi.grad, a.grad


def compare(backend: str, kw: dict, alpha: float, shape, device: str, seed: int = 0) -> dict:
    """One backend on one setting vs the reference: the entry the JSON holds."""
    p = make_params(**kw)
    gen = torch.Generator().manual_seed(seed)
    # α near 1 with the zero start keeps H~ small for many steps: a larger drive makes it fire (T = 20
    # spans two of the recursion's 16-step blocks, so the carry between blocks is checked too)
    scale, bias = (2.0, 4.0) if alpha >= 0.9 else (1.5, 0.3)
    x = (torch.randn(shape, generator=gen) * scale + bias).to(device)
    g = torch.randn(shape, generator=gen).to(device)
    got = _run(lambda xi, a: lif_fused(xi, a, p, spikes_only=True, backend=backend)[0], x, g, alpha)
    ref = _run(lambda xi, a: lif_reference(xi, a, p)[0], x, g, alpha)
    spikes = bool(torch.equal(got[0], ref[0]))
    gx = bool(torch.allclose(got[1], ref[1], rtol=1e-5, atol=1e-6))
    entry = {"spikes_equal": spikes, "grad_x_close": gx,
             "grad_x_max_abs_diff": float((got[1] - ref[1]).abs().max()),
             "spike_rate": float(ref[0].float().mean())}
    if p.mps:
        ga = bool(torch.allclose(got[2], ref[2], rtol=2e-4, atol=1e-5))
        entry.update(grad_alpha_close=ga, grad_alpha=float(got[2]), grad_alpha_ref=float(ref[2]))
    else:
        ga = True
    entry["passed"] = spikes and gx and ga and 0 < entry["spike_rate"] < 1
    return entry


def autocast_bf16(device: str) -> dict:
    """bf16 autocast on CUDA: spikes in bf16, equal to the fp32 neuron on the same (bf16) input."""
    lin = torch.nn.Linear(64, 64).to(device)
    lif = LIF(mps=True).to(device)
    x = torch.randn(4, 32, 64, device=device)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = lin(x)
        s = lif(y)
    ok = s.dtype == torch.bfloat16 and torch.equal(s.float(), lif(y.float()))
    return {"backend": "auto", "setting": "autocast-bf16-mps-first", "passed": bool(ok), "dtype": str(s.dtype)}


def run(device: str, dry_run: bool, deadline: float) -> dict:
    """Every backend that runs ``device`` tensors, over :data:`SETTINGS`, until ``deadline`` (time.time())."""
    shape = (20, 2, 300) if dry_run else (20, 8, 1000)
    probe = torch.zeros(shape[0], 1, device=device)
    entries, skipped = [], {}
    names = ["triton", "torch", "inductor"]
    if dry_run:
        skipped["inductor"] = "dry run: compiling each setting on the CPU takes minutes (tests/test_neurons_inductor.py covers it)"
        names.remove("inductor")
    for name in names:
        if not backends.supports(name, probe):
            skipped[name] = f"does not run {device} tensors here"
            continue
        todo = SETTINGS[:INDUCTOR_SETTINGS] if name == "inductor" else SETTINGS
        for label, kw, alpha in todo:
            if time.time() > deadline:
                skipped.setdefault(name, f"time budget spent before {label}")
                break
            t0 = time.time()
            try:
                e = compare(name, kw, alpha, shape, device)
            except Exception as exc:  # a backend that raises fails its entry
                e = {"passed": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            entries.append({"backend": name, "setting": label, "alpha": alpha, **e,
                            "seconds": round(time.time() - t0, 2)})
    if device == "cuda":
        entries.append(autocast_bf16(device))
    else:
        skipped["autocast-bf16"] = "GPU only (the CPU backends compute in fp32 on fp32 input)"
    return {"ran": True, "shape": list(shape), "entries": entries, "skipped": skipped,
            "passed": bool(entries) and all(e["passed"] for e in entries)}
