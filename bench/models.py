"""Benchmark (issue 4): a training step of spiking VGG-9, chorus vs the same net from SpikingJelly layers.

VGG-9 (64-128-P-256-256-P-512-512-P-512-512-P, linear readout) at T = 5, batch 16, input 2×48×48, one
step = forward + backward + SGD step with CE on the mean over timesteps. Candidates, timed in
interleaved rounds (medians; this VM is noisy):

- ``chorus MPS on`` / ``chorus MPS off``: ``chorus.models.create("vgg9", ...)``;
- ``SpikingJelly LIF``: ``layer.Conv2d/BatchNorm2d/AvgPool2d/Flatten/Linear`` in multi-step mode and
  ``neuron.LIFNode(step_mode="m")`` (torch backend, the only one on the CPU);
- ``... ReLU`` twins of both with every neuron replaced by ReLU: the ceiling a faster neuron alone can
  reach, and the base of "share of the step in the neurons" = 1 − t(ReLU twin) / t(net).

Peak memory is the peak of bytes allocated by torch during one step (torch.profiler memory events).
Bar: chorus MPS on ≥ 1.2× the SpikingJelly throughput, at no more peak memory.

    .venv/bin/python bench/models.py [--rounds 5] [--batch 16] [--timesteps 5] [--size 48]
"""
from __future__ import annotations

import argparse
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(__file__))
from _common import cpu_peak_bytes, interleaved_medians, print_table  # noqa: E402

import chorus.models as M  # noqa: E402
from chorus.models.vgg import CONFIGS  # noqa: E402
from chorus.neurons import LIF  # noqa: E402


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--timesteps", type=int, default=5)
    ap.add_argument("--size", type=int, default=48)
    args = ap.parse_args()
    from spikingjelly.activation_based import functional

    torch.manual_seed(0)
    T, B, S = args.timesteps, args.batch, args.size
    x = (torch.rand(T, B, 2, S, S) < 0.2).float()
    y = torch.randint(0, 10, (B,))
    shape = (2, S, S)
    nets = {
        "chorus MPS on": (M.create("vgg9", 10, shape, neuron={"mps": True}), None),
        "chorus MPS off": (M.create("vgg9", 10, shape), None),
        "SpikingJelly LIF": (sj_vgg9(10, S, "lif"), functional.reset_net),
        "chorus ReLU twin": (relu_twin(M.create("vgg9", 10, shape)), None),
        "SpikingJelly ReLU twin": (sj_vgg9(10, S, "relu"), None),
    }
    steps = {k: make_step(m, x, y, r) for k, (m, r) in nets.items()}
    peaks = {k: cpu_peak_bytes(fn) for k, fn in steps.items()}
    med = interleaved_medians(steps, rounds=args.rounds, warmup=1)

    print(f"spiking VGG-9 training step, T={T}, batch {B}, 2x{S}x{S}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {args.rounds} interleaved rounds (medians)")
    sj, sj_relu = med["SpikingJelly LIF"], med["SpikingJelly ReLU twin"]
    share = {"chorus MPS on": 1 - med["chorus ReLU twin"] / med["chorus MPS on"],
             "chorus MPS off": 1 - med["chorus ReLU twin"] / med["chorus MPS off"],
             "SpikingJelly LIF": 1 - sj_relu / sj}
    rows = []
    for k, t in med.items():
        rows.append([k, f"{t * 1e3:.0f}", f"{B / t:.1f}", f"{sj / t:.2f}x",
                     f"{peaks[k] / 2**20:.0f}", f"{share[k] * 100:.0f}%" if k in share else "-"])
    print_table(["candidate", "step ms", "samples/s", "vs SJ LIF", "peak MiB", "neuron share"], rows)
    speedup = sj / med["chorus MPS on"]
    mem_ok = peaks["chorus MPS on"] <= peaks["SpikingJelly LIF"]
    print(f"ceiling (SpikingJelly ReLU twin vs SpikingJelly LIF): {sj / sj_relu:.2f}x")
    print(f"bar: chorus MPS on >= 1.20x SpikingJelly LIF throughput: {speedup:.2f}x "
          f"-> {'PASS' if speedup >= 1.2 else 'FAIL'}; peak memory {peaks['chorus MPS on'] / 2**20:.0f} vs "
          f"{peaks['SpikingJelly LIF'] / 2**20:.0f} MiB -> {'PASS' if mem_ok else 'FAIL'}")


if __name__ == "__main__":
    main()
