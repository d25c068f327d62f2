"""Firing rates, synaptic operations and an energy estimate per sample.

The usual 45 nm figures (Horowitz, ISSCC 2014): an accumulate (AC) costs 0.9 pJ, a
multiply-accumulate (MAC) 4.6 pJ. As the issue specifies, the first synaptic layer (``nn.Linear`` or
``nn.Conv1d/2d/3d``, in execution order) sees real-valued data and is counted as dense MACs (output
elements × fan-in, the usual FLOP count). So is any later layer fed real values: one the model marks
with ``dense_input = True`` (e.g. Spiking PointNet's layers after a T-Net transform, ``x @ trans``),
or one whose input has a negative value (spikes, their pools and sums never do). Every other
synaptic layer is driven by spikes and only
accumulates when one arrives: one AC per (input spike, connected output) pair, counted exactly by
running the layer with all-ones weights on its input (padding, stride, dilation and groups included;
for a convolution, on the input summed over each group's input channels, times its output channels).
An input that is not binary counts by its magnitude: average-pooled spikes (k/4 after a 2×2 pool)
give the spike rate times the connections — the usual "firing rate × FLOPs" SOP count, which equals
the exact count on binary input — and a residual sum of two spikes counts as two. Normalisation,
pooling, the neurons themselves and attention products of spiking Transformers are not counted.

Counts are summed over all T timesteps of one inference and divided by the number of samples.
``ann_pj`` is the energy of the same architecture as a non-spiking network run once (every synaptic
layer dense MACs at one timestep), the usual point of comparison.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from chorus.diagnostics import names

E_AC_PJ = 0.9
E_MAC_PJ = 4.6
SYNAPTIC = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def dense_macs(module: nn.Module, x: torch.Tensor, out: torch.Tensor) -> int:
    """Multiply-accumulates of a dense pass: output elements × fan-in (the standard FLOP count)."""
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    fan_in = (module.in_channels // module.groups) * int(torch.tensor(module.kernel_size).prod())
    return out.numel() * fan_in


def event_ops(module: nn.Module, x: torch.Tensor) -> float:
    """Synaptic events: Σ over inputs of |x| × (outputs connected to it); on binary spikes, exactly the
    (input spike, connected output) pairs."""
    w = x.detach().float().abs()
    if isinstance(module, nn.Linear):
        return float(w.sum(dtype=torch.float64).item()) * module.out_features
    # Every output channel of a group sees the same inputs: count on the input summed over the input
    # channels of each group, with one all-ones filter per group, then multiply by its output channels.
    g = module.groups
    w_g = w.unflatten(1, (g, module.in_channels // g)).sum(2)
    ones = torch.ones((g, 1, *module.kernel_size), dtype=torch.float32, device=x.device)
    with torch.autocast(device_type=x.device.type, enabled=False):
        counts = module._conv_forward(w_g, ones, None)
    return float(counts.sum(dtype=torch.float64).item()) * (module.out_channels // g)


def real_valued(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``module``'s input is real-valued data rather than spikes (or pooled/summed spikes): the
    module is marked ``dense_input = True``, or the input has a negative value."""
    if getattr(module, "dense_input", False):
        return True
    return bool((x.detach() < 0).any().item())


@dataclass
class LayerOps:
    """Operations counted for one synaptic layer over the diagnostics subset."""

    first: bool
    ac: float = 0.0
    mac: float = 0.0
    dense: float = 0.0  # dense MACs over all timesteps (for the ANN comparison)


@dataclass
class OpsCounter:
    """Forward hooks on synaptic layers; the first layer to run is counted as dense MACs."""

    layers: dict[str, LayerOps] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    paused: bool = False  # True during extra passes that are not inferences (the gradient pass)

    def hook(self, name: str):
        def fn(module, args, out):
            if self.paused:
                return
            x = args[0]
            if name not in self.layers:
                self.layers[name] = LayerOps(first=not self.order)
                self.order.append(name)
            rec = self.layers[name]
            dense = dense_macs(module, x, out)
            rec.dense += dense
            if rec.first or real_valued(module, x):
                rec.mac += dense
            else:
                rec.ac += event_ops(module, x)
        return fn


def energy_metrics(counter: OpsCounter, num_samples: int, T: int) -> dict[str, float]:
    """Per-sample SOPs per layer, AC/MAC totals, energy in pJ and the dense ANN comparison."""
    if num_samples <= 0 or not counter.layers:
        return {}
    out: dict[str, float] = {}
    ac = mac = dense = 0.0
    for name in counter.order:
        rec = counter.layers[name]
        out[names.sop(name)] = (rec.ac + rec.mac) / num_samples
        ac += rec.ac / num_samples
        mac += rec.mac / num_samples
        dense += rec.dense / num_samples / max(T, 1)
    pj = E_AC_PJ * ac + E_MAC_PJ * mac
    ann = E_MAC_PJ * dense
    out[names.ENERGY_AC] = ac
    out[names.ENERGY_MAC] = mac
    out[names.ENERGY_PJ] = pj
    out[names.ENERGY_ANN_PJ] = ann
    if ann > 0:
        out[names.ENERGY_RATIO] = pj / ann
    return out


class FiringCounter:
    """Spike counts per layer and timestep from the outputs of the spiking layers."""

    def __init__(self) -> None:
        self.spikes: dict[str, torch.Tensor] = {}
        self.neurons: dict[str, int] = {}

    def update(self, layer: str, spikes: torch.Tensor) -> None:
        s = spikes.detach().reshape(spikes.shape[0], -1)
        # Counted in float64, exact up to 2^53 (float32 is exact only below 2^24, which e.g. Spikformer's
        # 128² stem exceeds at B ≥ 33); spikes may be bool, integer or float (0/1, or counts).
        per_t = s.sum(1, dtype=torch.float64).cpu()
        if layer in self.spikes:
            if self.spikes[layer].shape[0] != per_t.shape[0]:
                raise ValueError(f"layer {layer}: timesteps changed between batches")
            self.spikes[layer] += per_t
            self.neurons[layer] += s.shape[1]
        else:
            self.spikes[layer] = per_t
            self.neurons[layer] = s.shape[1]

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        total_spikes = total_slots = 0.0
        for layer, per_t in self.spikes.items():
            n = self.neurons[layer]
            for i in range(per_t.shape[0]):
                out[names.firing(layer, i + 1)] = float(per_t[i] / n)
            out[names.firing(layer)] = float(per_t.sum() / (n * per_t.shape[0]))
            total_spikes += float(per_t.sum())
            total_slots += n * per_t.shape[0]
        if total_slots:
            out[names.firing(None)] = total_spikes / total_slots
        return out
