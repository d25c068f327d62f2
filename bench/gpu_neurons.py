"""GPU check for the fused LIF, one script, < 5 minutes on one CUDA device.

1. Equality: on CUDA, the fused neuron (torch-ops recursion) against the plain per-timestep reference
   over the settings grid — identical spikes, gradients (input, α) equal to fp32 rounding — and the
   same under bf16 autocast (membrane kept in fp32).
2. Speed and memory: forward + backward of ``[T, 16, 64, 32, 32]`` for T = 4, 8, 16: chorus MPS off /
   on vs SpikingJelly's ``LIFNode(step_mode="m")`` (which dispatches to its own CUDA/Triton kernels on
   GPU), median time over interleaved rounds and ``torch.cuda.max_memory_allocated``.

    python bench/gpu_neurons.py            # exits 0 with a note when no CUDA device is present
"""
from __future__ import annotations

import itertools
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from _common import interleaved_medians, print_table  # noqa: E402

from chorus.neurons import LIF, lif_fused, lif_reference, make_params  # noqa: E402


def check_equality(dev: str) -> bool:
    ok = True
    grid = itertools.product([0.0, None], [True, False], [False, True], ["sigmoid", "atan", "rect"], [False, True])
    for v_reset, decay, detach, sur, mps in grid:
        p = make_params(v_reset=v_reset, decay_input=decay, detach_reset=detach, surrogate=sur, mps=mps)
        x = torch.randn(6, 8, 1000, device=dev) * 1.5 + 0.3
        g = torch.randn_like(x)
        outs = []
        for fn in (lambda x, a: lif_fused(x, a, p), lambda x, a: lif_reference(x, a, p)):
            xi = x.clone().requires_grad_()
            a = torch.tensor(0.4, device=dev, requires_grad=True)
            s, _, _ = fn(xi, a)
            (s * g).sum().backward()
            outs.append((s.detach(), xi.grad, a.grad))
        same = torch.equal(outs[0][0], outs[1][0])
        gx = torch.allclose(outs[0][1], outs[1][1], rtol=1e-5, atol=1e-6)
        ga = (not mps) or torch.allclose(outs[0][2], outs[1][2], rtol=2e-4, atol=1e-5)
        if not (same and gx and ga):
            ok = False
            print(f"MISMATCH v_reset={v_reset} decay={decay} detach={detach} {sur} mps={mps}: "
                  f"spikes {same} grad_x {gx} grad_alpha {ga}")
    lin = torch.nn.Linear(64, 64).to(dev)
    lif = LIF(mps=True).to(dev)
    x = torch.randn(4, 32, 64, device=dev)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = lin(x)
        s = lif(y)
    ok &= s.dtype == torch.bfloat16 and torch.equal(s.float(), lif(y.float()))
    print(f"equality on {dev}: {'OK' if ok else 'FAILED'} (48 settings + bf16 autocast)")
    return ok


def bench(dev: str) -> None:
    from spikingjelly.activation_based import neuron

    for T in (4, 8, 16):
        x = torch.randn(T, 16, 64, 32, 32, device=dev) * 1.5 + 0.3
        g = torch.randn_like(x)
        sj = neuron.LIFNode(step_mode="m").to(dev)

        def sj_fn(xi):
            sj.reset()
            return sj(xi)

        fns = {"chorus (MPS off)": LIF().to(dev), "chorus (MPS on)": LIF(mps=True).to(dev), "spikingjelly LIFNode": sj_fn}

        def step(fn):
            def run():
                xi = x.detach().requires_grad_()
                fn(xi).backward(g)
            return run

        med = interleaved_medians({k: step(f) for k, f in fns.items()}, rounds=30, sync=torch.cuda.synchronize)
        peak = {}
        for k, f in fns.items():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            step(f)()
            torch.cuda.synchronize()
            peak[k] = torch.cuda.max_memory_allocated() - base
        sjk = "spikingjelly LIFNode"
        rows = [[k, f"{med[k] * 1e3:.3f}", f"{peak[k] / 2**20:.0f}", f"{med[sjk] / med[k]:.2f}x",
                 f"{peak[k] / peak[sjk]:.2f}"] for k in fns]
        print(f"\nT={T}, [{T}, 16, 64, 32, 32] fp32 on {torch.cuda.get_device_name()}")
        print_table(["implementation", "median ms", "peak MiB", "speed vs SJ", "peak vs SJ"], rows)


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check (run bench/neurons.py for the CPU figures)")
        return 0
    t0 = time.time()
    ok = check_equality("cuda")
    try:
        bench("cuda")
    except ImportError:
        print("spikingjelly not installed: skipping the speed table")
    print(f"\ntotal {time.time() - t0:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
