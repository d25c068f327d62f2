"""Benchmark (issue 12): every LIF implementation on this machine, side by side, forward + backward on the CPU.

One layer on ``[T, 16, 64, 32, 32]`` fp32 (T = 4 and 16 by default), each candidate timed in interleaved
rounds (medians; ``_common.interleaved_medians``), with its peak bytes allocated during the step and
the bytes autograd keeps from forward to backward:

- chorus MPS on through each backend that runs here: ``c`` (the C kernel), ``inductor`` (the recursion
  compiled by torch.compile), ``torch`` (the same recursion in eager torch ops), ``reference`` (the
  plain per-timestep autograd loop), and ``auto`` (what ``LIF()`` picks: measured once, cached); chorus
  MPS off through ``auto``;
- SpikingJelly ``LIFNode`` (multi-step, torch backend), snnTorch ``Leaky``;
- ``ReLU twin``: ``torch.relu`` forward + backward on the same tensor, the floor of any elementwise
  layer of that size (the ceiling a neuron can reach).

Every candidate is also timed alone: the peers in a child process that never imports chorus, chorus
MPS on / off (``auto``) in a child that runs nothing else (on a shared 2-core machine the other
candidates' memory and threads slow a neighbour down); the speed ratios use each one's faster figure. The first use of each chorus backend (C build or load, Inductor compile or
disk-cache load) is timed before the rounds and printed, and for ``inductor`` also the first use in a
fresh process, which finds the blocks in the disk cache (what a second DDP rank pays).

``--isa avx2`` re-runs everything in a child whose code is built for an AMD Zen3 (AVX2, no AVX-512):
``ATEN_CPU_CAPABILITY=avx2`` (torch's own kernels, SpikingJelly's and snnTorch's included),
``TORCHINDUCTOR_CPP_MARCH=znver3`` (Inductor picks its AVX2 vectoriser from the former) and
``CHORUS_KERNEL_MARCH=znver3`` (the C kernel). That is an EMULATION on this CPU: same caches, clock and
memory as the host, 256-bit code. Bars (issue 12): chorus MPS on (``auto``) ≥ 3× SpikingJelly at T = 4,
≥ 4× at T = 16, peak ≤ ½ of SpikingJelly's.

    .venv/bin/python bench/neurons.py [--rounds 9] [--timesteps 4 16] [--isa native|avx2] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "TORCHINDUCTOR_CPP_MARCH": "znver3", "CHORUS_KERNEL_MARCH": "znver3"}

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _common import cpu_peak_bytes, interleaved_medians, print_table, saved_tensor_bytes  # noqa: E402

SJ = "spikingjelly LIFNode"
AUTO_ON = "chorus MPS on [auto]"
BARS = {4: 3.0, 16: 4.0}


def peers() -> dict:
    cands = {}
    try:
        from spikingjelly.activation_based import neuron

        sj = neuron.LIFNode(step_mode="m")

        def sj_fn(x):
            sj.reset()
            return sj(x)

        cands[SJ] = sj_fn
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
    cands["ReLU twin"] = torch.relu
    return cands


def chorus_cands(x: torch.Tensor, with_reference: bool) -> tuple[dict, dict]:
    """``({label: layer}, {label: backend resolved})`` for every chorus backend that runs ``x``."""
    from chorus.neurons import LIF, backends

    x2 = x.reshape(x.shape[0], -1)
    names = [n for n in ("c", "inductor", "torch") if backends.supports(n, x2)]
    if with_reference:
        names.append("reference")
    cands, resolved = {}, {}
    for on, tag in ((True, "on"), (False, "off")):
        auto = LIF(mps=on)
        label = f"chorus MPS {tag} [auto]"
        cands[label] = auto
        resolved[label] = backends.resolve("auto", x2, auto.p)
        if on:
            for n in names:
                cands[f"chorus MPS on [{n}]"] = LIF(mps=True, backend=n)
                resolved[f"chorus MPS on [{n}]"] = n
    return cands, resolved


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


def _child(args: list[str], env: dict | None = None) -> dict:
    res = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                         env={**os.environ, **(env or {})})
    if res.returncode != 0:
        print(f"child {' '.join(args)} failed: {res.stderr.strip()[-400:]}")
        return {}
    return json.loads(res.stdout.strip().splitlines()[-1])


def _first_use_child(T: int) -> dict:
    """In a fresh process: seconds of the first inductor forward + backward (Inductor's disk cache)."""
    from chorus.neurons import LIF

    x, g = _inputs(T)
    lif = LIF(mps=True, backend="inductor")
    t0 = time.perf_counter()
    _step(lif, x, g)()
    return {"inductor": time.perf_counter() - t0}


def _alone(T: int, rounds: int, which: str) -> dict:
    """Median seconds of the peers (``which="peers"``) or of chorus MPS on / off [auto], timed alone."""
    x, g = _inputs(T)
    if which == "peers":
        fns = peers()
    else:
        from chorus.neurons import LIF

        fns = {AUTO_ON: LIF(mps=True), "chorus MPS off [auto]": LIF()}
    return interleaved_medians({k: _step(f, x, g) for k, f in fns.items()}, rounds=rounds)


def run(args) -> dict:
    from chorus.neurons import cpu_kernel, machine

    emulated = os.environ.get("ATEN_CPU_CAPABILITY") == "avx2"
    cpu = machine.cpu_info()["model"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU {cpu} ({machine.isa_summary()}), "
          f"C kernel: {cpu_kernel.available()}"
          + ("\nEMULATED AVX2 (Zen3 code on this CPU): " + ", ".join(f"{k}={v}" for k, v in AVX2_ENV.items())
             if emulated else ""))
    out = {"cpu": cpu, "isa": "avx2 (emulated)" if emulated else machine.isa_summary(),
           "threads": torch.get_num_threads(), "torch": torch.__version__, "results": {}}
    verdicts = []
    for T in args.timesteps:
        x, g = _inputs(T)
        ours, resolved = chorus_cands(x, with_reference=not args.no_reference)
        first_use = {}
        for label, fn in ours.items():  # first use: builds, compiles, disk-cache loads, auto's measuring
            t0 = time.perf_counter()
            _step(fn, x, g)()
            first_use[label] = time.perf_counter() - t0
        fns = {**ours, **peers()}
        med = interleaved_medians({k: _step(f, x, g) for k, f in fns.items()}, rounds=args.rounds)
        peak = {k: cpu_peak_bytes(_step(f, x, g)) for k, f in fns.items()}
        saved = {k: saved_tensor_bytes(lambda f=f: f(x.detach().requires_grad_())) for k, f in fns.items()}
        alone = {**_child(["--alone", "peers", "--timesteps", str(T), "--rounds", str(args.rounds)]),
                 **_child(["--alone", "chorus", "--timesteps", str(T), "--rounds", str(args.rounds)])}
        best = {k: min(med[k], alone.get(k, med[k])) for k in fns}
        sj_ref = best.get(SJ)
        rows = []
        for k in fns:
            speed = f"{sj_ref / best[k]:.2f}x" if sj_ref else "-"
            mem = f"{peak[k] / peak[SJ]:.2f}" if SJ in peak else "-"
            label = f"{k} -> {resolved[k]}" if k.endswith("[auto]") else k
            alone_ms = f"{alone[k] * 1e3:.2f}" if k in alone else "-"
            rows.append([label, f"{med[k] * 1e3:.2f}", alone_ms, f"{peak[k] / 2**20:.0f}", f"{saved[k] / 2**20:.0f}",
                         speed, mem])
        print(f"\nT={T}, input [{T}, 16, 64, 32, 32] fp32, forward+backward, {args.rounds} interleaved rounds")
        print_table(["implementation", "median ms", "alone ms", "peak MiB", "saved MiB", "speed vs SJ", "peak vs SJ"],
                    rows)
        print("speed ratios use each candidate's faster figure (interleaved here, or alone in a child process)")
        print("first use (before the rounds; includes building/compiling or loading from the disk cache): "
              + ", ".join(f"{k.replace('chorus ', '')} {v:.2f} s" for k, v in first_use.items()))
        second = {}
        if "chorus MPS on [inductor]" in ours:
            second = _child(["--first-use", "--timesteps", str(T)])
            if second:
                print(f"first use of inductor in a second process (blocks from the disk cache): {second['inductor']:.2f} s")
        out["results"][str(T)] = {"median_ms": {k: med[k] * 1e3 for k in fns},
                                  "alone_ms": {k: v * 1e3 for k, v in alone.items()}, "peak_mib": {k: peak[k] / 2**20 for k in fns},
                                  "saved_mib": {k: saved[k] / 2**20 for k in fns}, "auto": resolved[AUTO_ON],
                                  "first_use_s": first_use, "second_process_first_use_s": second}
        if sj_ref and T in BARS:
            sp = sj_ref / best[AUTO_ON]
            verdicts.append((f"MPS on [auto -> {resolved[AUTO_ON]}] ≥ {BARS[T]:g}x SpikingJelly at T={T} ({sp:.2f}x)",
                             sp >= BARS[T]))
            mr = peak[AUTO_ON] / peak[SJ]
            verdicts.append((f"MPS on [auto] peak ≤ 0.5x SpikingJelly's at T={T} ({mr:.2f}x)", mr <= 0.5))
    print("\nBars" + (" (EMULATED AVX2)" if emulated else "") + ":")
    for text, ok in verdicts:
        print(f"  [{'PASS' if ok else 'FAIL'}] {text}")
    out["bars"] = [{"bar": t, "pass": ok} for t, ok in verdicts]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--timesteps", type=int, nargs="+", default=[4, 16])
    ap.add_argument("--isa", choices=["native", "avx2"], default="native",
                    help="avx2: emulate an AVX2-only (Zen3) host on this CPU (see above)")
    ap.add_argument("--no-reference", action="store_true", help="leave out the plain-loop reference (slow)")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--alone", choices=["peers", "chorus"], help=argparse.SUPPRESS)
    ap.add_argument("--first-use", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.isa == "avx2" and os.environ.get("ATEN_CPU_CAPABILITY") != "avx2":
        # ATEN_CPU_CAPABILITY is read when torch loads: run the whole benchmark again in a child
        argv = [a for a in sys.argv[1:] if a not in ("--isa", "avx2", "--isa=avx2")]
        return subprocess.run([sys.executable, __file__, *argv], env={**os.environ, **AVX2_ENV}).returncode
    if args.alone:
        print(json.dumps(_alone(args.timesteps[0], args.rounds, args.alone)))
        return 0
    if args.first_use:
        print(json.dumps(_first_use_child(args.timesteps[0])))
        return 0
    out = run(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
