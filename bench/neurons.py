"""Benchmark: chorus LIF (MPS off / on) vs SpikingJelly ``LIFNode`` and snnTorch ``Leaky`` on the CPU.

Forward + backward of one layer on ``[T, 16, 64, 32, 32]`` fp32, T = 4, 8, 16: median time over
interleaved rounds, peak bytes allocated during the step (torch.profiler memory events), and the bytes
autograd keeps from forward to backward. The peers are also timed alone, in a child process that never
imports chorus; the speed ratios use the faster of their two figures. Bars (issue 2): chorus MPS-on ≥ 3× faster than SpikingJelly at
T = 4, at most half its peak memory, and MPS costs ≤ 15% over chorus MPS-off. The MPS cost is taken
from its own paired rounds (MPS off and on only, each call after the same untimed cache flush), so
that which peer happened to run just before does not enter it; the table's medians show it too.

    .venv/bin/python bench/neurons.py [--rounds 15] [--timesteps 4 8 16]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from _common import cpu_peak_bytes, interleaved_medians, print_table, saved_tensor_bytes  # noqa: E402

SJ = "spikingjelly LIFNode"


def candidates(T: int, peers_only: bool = False):
    cands = {}
    if not peers_only:
        from chorus.neurons import LIF

        cands = {"chorus (MPS off)": LIF(), "chorus (MPS on)": LIF(mps=True)}
    try:
        from spikingjelly.activation_based import neuron

        sj = neuron.LIFNode(step_mode="m")

        def sj_fn(x):
            sj.reset()
            return sj(x)

        cands["spikingjelly LIFNode"] = sj_fn
    except ImportError:
        print("spikingjelly not installed: skipping it")
    try:
        import snntorch

        leaky = snntorch.Leaky(beta=0.5)

        def snn_fn(x):
            mem = leaky.init_leaky()
            out = []
            for t in range(x.shape[0]):
                spk, mem = leaky(x[t], mem)
                out.append(spk)
            return torch.stack(out)

        cands["snntorch Leaky"] = snn_fn
    except ImportError:
        print("snntorch not installed: skipping it")
    return cands


def _step(fn, x, g):
    def run():
        xi = x.detach().requires_grad_()
        fn(xi).backward(g)  # a given upstream gradient: no harness ops on top of the layer
    return run


def _inputs(T: int):
    """The same input and upstream gradient in this process and in the peers' child process."""
    gen = torch.Generator().manual_seed(T)
    x = torch.randn(T, 16, 64, 32, 32, generator=gen) * 1.5 + 0.3
    return x, torch.randn(x.shape, generator=gen)


def _peers_alone(T: int, rounds: int) -> dict[str, float]:
    """Median times of the peers measured in a child process that never imports chorus."""
    cmd = [sys.executable, __file__, "--peers-alone", "--timesteps", str(T), "--rounds", str(rounds)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        print(f"peers alone: the child process failed ({res.stderr.strip()[-300:]})")
        return {}
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--timesteps", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--peers-alone", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.peers_alone:
        x, g = _inputs(args.timesteps[0])
        fns = candidates(args.timesteps[0], peers_only=True)
        print(json.dumps(interleaved_medians({k: _step(f, x, g) for k, f in fns.items()}, rounds=args.rounds)))
        return 0
    from chorus.neurons import cpu_kernel

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, C kernel: {cpu_kernel.available()}")
    verdicts = []
    for T in args.timesteps:
        x, g = _inputs(T)
        fns = candidates(T)
        med = interleaved_medians({k: _step(f, x, g) for k, f in fns.items()}, rounds=args.rounds)
        peak = {k: cpu_peak_bytes(_step(f, x, g)) for k, f in fns.items()}
        saved = {k: saved_tensor_bytes(lambda f=f: f(x.detach().requires_grad_())) for k, f in fns.items()}
        alone = _peers_alone(T, args.rounds)
        sj_ref = min(med[SJ], alone.get(SJ, med[SJ])) if SJ in med else None
        rows = []
        for k in fns:
            speed = f"{sj_ref / med[k]:.2f}x" if sj_ref else "-"
            mem = f"{peak[k] / peak[SJ]:.2f}" if SJ in peak else "-"
            rows.append([k, f"{med[k] * 1e3:.2f}", f"{peak[k] / 2**20:.0f}", f"{saved[k] / 2**20:.0f}", speed, mem])
        print(f"\nT={T}, input [{T}, 16, 64, 32, 32] fp32, forward+backward")
        print_table(["implementation", "median ms", "peak MiB", "saved MiB", "speed vs SJ", "peak vs SJ"], rows)
        if alone:
            print("peers alone (child process without chorus): "
                  + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in alone.items())
                  + f"; speed ratios use SpikingJelly's faster figure, {sj_ref * 1e3:.2f} ms")
        flush = torch.empty(2 * x.numel())  # twice the input: no layer data left in the caches
        pair = interleaved_medians({k: _step(fns[k], x, g) for k in ("chorus (MPS off)", "chorus (MPS on)")},
                                   rounds=2 * args.rounds, before=lambda: flush.fill_(1.0))
        table_overhead = med["chorus (MPS on)"] / med["chorus (MPS off)"] - 1
        overhead = pair["chorus (MPS on)"] / pair["chorus (MPS off)"] - 1
        print(f"MPS overhead over MPS off: {overhead * 100:+.1f}% in paired rounds "
              f"({pair['chorus (MPS on)'] * 1e3:.2f} vs {pair['chorus (MPS off)'] * 1e3:.2f} ms, after a cache flush); "
              f"{table_overhead * 100:+.1f}% from the table")
        if T == 4 and SJ in med:
            sp = sj_ref / med["chorus (MPS on)"]
            mr = peak["chorus (MPS on)"] / peak[SJ]
            verdicts += [(f"MPS-on ≥ 3x faster than SpikingJelly at T=4 ({sp:.2f}x)", sp >= 3.0),
                         (f"MPS-on peak ≤ 0.5x SpikingJelly's at T=4 ({mr:.2f}x)", mr <= 0.5)]
        verdicts.append((f"MPS overhead ≤ 15% at T={T} ({overhead * 100:+.1f}%)", overhead <= 0.15))
    print("\nBars:")
    for text, ok in verdicts:
        print(f"  [{'PASS' if ok else 'FAIL'}] {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
