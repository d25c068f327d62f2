"""Benchmark (issues 4, 12): a training step of spiking VGG-9, chorus vs the same net from SpikingJelly layers.

VGG-9 (64-128-P-256-256-P-512-512-P-512-512-P, linear readout) at T = 5, batch 16, input 2×48×48, one
step = forward + backward + SGD step with CE on the mean over timesteps. Candidates, timed in
interleaved rounds (medians; this VM is noisy):

- ``chorus MPS on [auto]`` (what ``LIF()`` picks, and the backend it resolved to) and ``chorus MPS on
  [NAME]`` for every other neuron backend the registry (:mod:`chorus.neurons.backends`) says runs here
  (``reference``, ``torch``, ``inductor``, ``c``; ``triton`` only on CUDA, never in its CPU interpreter);
  ``chorus MPS off [auto]``: ``chorus.models.create("vgg9", ...)`` with the neuron of docs/method.md,
  "The spiking core";
- ``SpikingJelly LIF``: ``layer.Conv2d/BatchNorm2d/AvgPool2d/Flatten/Linear`` in multi-step mode and
  ``neuron.LIFNode(step_mode="m")`` (torch backend, the only one on the CPU);
- ``... ReLU twin`` of both with every neuron replaced by ReLU: the ceiling a faster neuron alone can
  reach, and the base of "share of the step in the neurons" = 1 − t(ReLU twin) / t(net).

Every row shows its step time, SpikingJelly's measured in the same run, the ratio (SJ / ours: > 1 is
faster than SpikingJelly) and t / t(chorus ReLU twin). Peak memory is the peak of bytes allocated
during one step (``_common.cpu_peak_bytes``). Bars: chorus MPS on ≥ 1.2× SpikingJelly at no more peak
memory (issue 4); chorus MPS on within 5% of its own ReLU twin (issue 12).

    .venv/bin/python bench/models.py [--rounds 5] [--batch 16] [--timesteps 5] [--size 48]
                                     [--backends NAME ...] [--json FILE] [--quick]

``--quick`` (the smoke test's setting) is T = 2, batch 2, 16×16, one round, without ``inductor`` (its
first compile takes minutes on a CPU); its figures only prove the script runs.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(__file__))
from _common import cpu_peak_bytes, interleaved_medians, print_table  # noqa: E402

import chorus.models as M  # noqa: E402
from chorus.models.vgg import CONFIGS  # noqa: E402

SJ = "SpikingJelly LIF"


def sj_vgg9(num_classes: int, size: int, act: str) -> nn.Module:
    """VGG-9 from SpikingJelly layers (bias-free convs + BN, as ours), ``act`` = "lif" or "relu"."""
    from spikingjelly.activation_based import layer, neuron

    mods, c, h = [], 2, size
    for item in CONFIGS["vgg9"]:
        if item == "P":
            mods.append(layer.AvgPool2d(2, step_mode="m"))
            h //= 2
        else:
            mods += [layer.Conv2d(c, item, 3, padding=1, bias=False, step_mode="m"),
                     layer.BatchNorm2d(item, step_mode="m"),
                     neuron.LIFNode(step_mode="m") if act == "lif" else nn.ReLU()]
            c = item
    mods += [layer.Flatten(step_mode="m"), layer.Linear(c * h * h, num_classes, step_mode="m")]
    return nn.Sequential(*mods)


def relu_twin(model: nn.Module) -> nn.Module:
    """The same chorus model with every LIF replaced by ReLU (in place)."""
    for name, _ in M.spiking_layers(model):
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, nn.ReLU())
    return model


def with_backend(model: nn.Module, backend: str) -> nn.Module:
    """Every LIF of ``model`` runs ``backend`` (in place; the name is checked by the registry)."""
    from chorus.neurons.backends import canonical

    for _, lif in M.spiking_layers(model):
        lif.backend = canonical(backend)
    return model


def host_backends(T: int, quick: bool) -> tuple[list[str], dict[str, str]]:
    """The chorus backends besides ``auto`` that run a float32 CPU tensor here, and why the others are out."""
    from chorus.neurons import backends, triton_lif

    probe = torch.zeros(T, 1)
    names, out = [], {}
    for name in backends.BACKENDS:
        if name == "auto":
            continue
        if name == "triton" and triton_lif.interpreting():
            out[name] = "Triton's CPU interpreter checks exactness, it is not a speed path"
        elif quick and name == "inductor":
            out[name] = "--quick: its first compile takes minutes on a CPU"
        elif name != "reference" and not backends.supports(name, probe):
            out[name] = "does not run float32 CPU tensors here"
        else:
            names.append(name)
    return names, out


def make_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, reset=None):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x).mean(0), y)
        loss.backward()
        opt.step()
        if reset is not None:
            reset(model)

    return step


def candidates(shape, size: int, names: list[str]) -> dict:
    """``{label: (model, reset or None)}``: chorus per backend, its ReLU twin, and the SpikingJelly pair."""
    nets = {"chorus MPS on [auto]": (M.create("vgg9", 10, shape, neuron={"mps": True}), None)}
    for name in names:
        nets[f"chorus MPS on [{name}]"] = (with_backend(M.create("vgg9", 10, shape, neuron={"mps": True}), name), None)
    nets["chorus MPS off [auto]"] = (M.create("vgg9", 10, shape), None)
    nets["chorus ReLU twin"] = (relu_twin(M.create("vgg9", 10, shape)), None)
    try:
        from spikingjelly.activation_based import functional
    except ImportError:
        print("spikingjelly not installed: no peer rows")
        return nets
    nets[SJ] = (sj_vgg9(10, size, "lif"), functional.reset_net)
    nets["SpikingJelly ReLU twin"] = (sj_vgg9(10, size, "relu"), None)
    return nets


def _resolved(model: nn.Module, T: int) -> str:
    from chorus.neurons.backends import resolve

    name, lif = M.spiking_layers(model)[0]
    return resolve(lif.backend, torch.zeros(T, 1), lif.p)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--timesteps", type=int, default=5)
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--backends", nargs="+", help="chorus backends besides auto (default: all that run here)")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one round: proves the script runs")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.batch, args.timesteps, args.size = 1, 2, 2, 16
    torch.manual_seed(0)
    T, B, S = args.timesteps, args.batch, args.size
    x = (torch.rand(T, B, 2, S, S) < 0.2).float()
    y = torch.randint(0, 10, (B,))
    names, left_out = host_backends(T, args.quick)
    if args.backends:
        left_out.update({n: "not asked for (--backends)" for n in names if n not in args.backends})
        names = [n for n in names if n in args.backends]
    nets = candidates((2, S, S), S, names)
    auto = _resolved(nets["chorus MPS on [auto]"][0], T)
    steps = {k: make_step(m, x, y, r) for k, (m, r) in nets.items()}
    peaks = {k: cpu_peak_bytes(fn) for k, fn in steps.items()}
    med = interleaved_medians(steps, rounds=args.rounds, warmup=1)

    print(f"spiking VGG-9 training step, T={T}, batch {B}, 2x{S}x{S}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {args.rounds} interleaved rounds (medians); auto -> {auto}")
    if left_out:
        print("backends left out: " + "; ".join(f"{k} ({v})" for k, v in left_out.items()))
    sj = med.get(SJ)
    relu = med["chorus ReLU twin"]
    twin = {k: (med["SpikingJelly ReLU twin"] if k.startswith("SpikingJelly") else relu) for k in med}
    rows, result = [], {"T": T, "batch": B, "size": S, "rounds": args.rounds, "auto": auto,
                        "left_out": left_out, "rows": {}}
    for k, t in med.items():
        share = 1 - twin[k] / t if "ReLU" not in k else None
        r = {"step_ms": t * 1e3, "samples_per_s": B / t, "sj_step_ms": sj * 1e3 if sj else None,
             "vs_sj": sj / t if sj else None, "vs_relu_twin": t / relu, "peak_mib": peaks[k] / 2**20,
             "neuron_share": share}
        result["rows"][k] = r
        rows.append([k, f"{t * 1e3:.0f}", f"{B / t:.1f}", f"{sj * 1e3:.0f}" if sj else "-",
                     f"{sj / t:.2f}x" if sj else "-", f"{t / relu:.3f}", f"{peaks[k] / 2**20:.0f}",
                     f"{share * 100:.0f}%" if share is not None else "-"])
    print_table(["candidate", "step ms", "samples/s", "SJ LIF ms", "vs SJ LIF", "t / ReLU twin", "peak MiB",
                 "neuron share"], rows)
    on = med["chorus MPS on [auto]"]
    result["mps_on_vs_relu_twin"] = on / relu
    print(f"bar: chorus MPS on [auto] within 5% of its ReLU twin: {on / relu:.3f}x "
          f"-> {'PASS' if on / relu <= 1.05 else 'FAIL'}")
    if sj:
        speedup = sj / on
        mem_ok = peaks["chorus MPS on [auto]"] <= peaks[SJ]
        result["mps_on_vs_sj"] = speedup
        print(f"ceiling (SpikingJelly ReLU twin vs SpikingJelly LIF): {sj / med['SpikingJelly ReLU twin']:.2f}x")
        print(f"bar: chorus MPS on >= 1.20x SpikingJelly LIF throughput: {speedup:.2f}x "
              f"-> {'PASS' if speedup >= 1.2 else 'FAIL'}; peak memory {peaks['chorus MPS on [auto]'] / 2**20:.0f} vs "
              f"{peaks[SJ] / 2**20:.0f} MiB -> {'PASS' if mem_ok else 'FAIL'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
