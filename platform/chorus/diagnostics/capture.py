"""Hooks that record what the diagnostics need during one forward pass, and nothing when removed.

For the chosen spiking layers (``chorus.neurons.LIF``) a :class:`Recorder` keeps, per forward pass,
the layer input X (only when gradients are on, in the autograd graph, for the temporal gradient flow),
the output spikes and the detached states H~(t), V(t−1) (``lif.record_states``). Spikes of every
spiking layer feed the firing rates; every synaptic layer feeds the operation counter. Leaving the
context removes the hooks and restores ``record_states`` and ``last_states``: a model outside a
``Recorder`` runs exactly as if diagnostics did not exist (docs/method.md: neurons keep no state).

A layer called more than once in one forward pass (a shared or recurrent layer) has its calls joined
along the time axis. A module that steps a ``LIF``'s equations itself instead of calling it (it exposes
the ``LIF`` as ``stepped_lif`` and takes a ``step_tap`` callback, e.g. the SRNN's recurrent layer)
reports its per-step inputs X(t), the tensors its steps used, so ∂L/∂X(t) includes the recurrent path.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from chorus.diagnostics.energy import SYNAPTIC, OpsCounter
from chorus.models.introspect import spiking_layers
from chorus.neurons import LIF


def resolve_layers(model: nn.Module, layers) -> list[tuple[str, LIF]]:
    """``layers`` as names or ``(name, LIF)`` pairs (None: all spiking layers) → ``[(name, LIF)]``."""
    available = spiking_layers(model)
    if not available:
        raise ValueError(f"{type(model).__name__} has no chorus LIF layers: nothing to diagnose")
    if layers is None:
        return available
    by_name = dict(available)
    out = []
    for item in layers:
        name = item[0] if isinstance(item, tuple) else item
        if name not in by_name:
            raise ValueError(f"layer {name!r} is not a spiking layer of the model; "
                             f"spiking layers: {', '.join(by_name)}")
        out.append((name, by_name[name]))
    return out


@dataclass
class LayerRecord:
    """One forward pass of one chosen layer: spikes S, H~(t) and V(t−1), each ``[T, B, ...]``, and the
    input X of each call, in the autograd graph (kept only when gradients were on; else empty)."""

    x_parts: list[torch.Tensor]
    spikes: torch.Tensor
    h_tilde: torch.Tensor
    v_prev: torch.Tensor


def _join(parts: list[torch.Tensor]) -> torch.Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts, 0)


class Recorder:
    """Context manager installing the hooks; ``take()`` returns and clears one forward pass's records."""

    def __init__(self, model: nn.Module, chosen: list[tuple[str, LIF]], ops: OpsCounter | None = None):
        self.model = model
        self.chosen = dict(chosen)
        self.ops = ops
        self.handles = []
        self.saved_flags: dict[str, tuple] = {}
        self.saved_taps: list[tuple[nn.Module, object]] = []
        self._x: dict[str, list] = {}
        self._s: dict[str, list] = {}
        self._h: dict[str, list] = {}
        self._v: dict[str, list] = {}

    def __enter__(self) -> "Recorder":
        try:
            lif_names = {id(lif): name for name, lif in spiking_layers(self.model)}
            for m in self.model.modules():
                lif = getattr(m, "stepped_lif", None)
                if isinstance(lif, LIF) and id(lif) in lif_names:
                    self.saved_taps.append((m, m.step_tap))
                    m.step_tap = self._tap(lif_names[id(lif)], lif)
            for name, lif in spiking_layers(self.model):
                if name in self.chosen:
                    self.saved_flags[name] = (lif.record_states, lif.last_states)
                    lif.record_states = True
                    self.handles.append(lif.register_forward_pre_hook(self._pre(name)))
                self.handles.append(lif.register_forward_hook(self._post(name, name in self.chosen)))
            if self.ops is not None:
                for name, m in self.model.named_modules():
                    if isinstance(m, SYNAPTIC):
                        self.handles.append(m.register_forward_hook(self.ops.hook(name)))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()
        for m, tap in self.saved_taps:
            m.step_tap = tap
        self.saved_taps.clear()
        for name, (flag, last) in self.saved_flags.items():
            self.chosen[name].record_states = flag
            self.chosen[name].last_states = last
        self.saved_flags.clear()
        self._clear()

    def _pre(self, name: str):
        def fn(module, args):
            if not torch.is_grad_enabled():
                return None  # X is needed only for ∂L/∂X: keeping it in a no-grad pass only holds memory
            x = args[0]
            if not x.requires_grad:
                # Frozen weights (or a neuron fed by data): make X a leaf so ∂L/∂X exists.
                x = x.detach().requires_grad_(True)
                self._x.setdefault(name, []).append(x)
                return (x,) + tuple(args[1:])
            self._x.setdefault(name, []).append(x)
            return None
        return fn

    def _post(self, name: str, chosen: bool):
        def fn(module, args, out):
            spikes = out[0] if isinstance(out, tuple) else out
            self._s.setdefault(name, []).append(spikes.detach())
            if chosen:
                st = module.last_states
                self._h.setdefault(name, []).append(st.h_tilde)
                self._v.setdefault(name, []).append(st.v_prev)
        return fn

    def _tap(self, name: str, lif: LIF):
        """``step_tap`` of a module stepping ``lif`` itself: its per-step inputs (``[1, B, ...]`` each, in
        the graph) and its output spikes, recorded like a call of the ``LIF``."""
        chosen = name in self.chosen

        def fn(inputs: list[torch.Tensor], spikes: torch.Tensor) -> None:
            self._s.setdefault(name, []).append(spikes.detach())
            if chosen:
                if torch.is_grad_enabled():
                    self._x.setdefault(name, []).extend(inputs)
                st = lif.last_states
                self._h.setdefault(name, []).append(st.h_tilde)
                self._v.setdefault(name, []).append(st.v_prev)
        return fn

    def _clear(self) -> None:
        self._x, self._s, self._h, self._v = {}, {}, {}, {}

    def take(self) -> tuple[dict[str, LayerRecord], dict[str, torch.Tensor]]:
        """(records of the chosen layers, spikes of every spiking layer) of the last forward pass."""
        records = {
            name: LayerRecord(self._x.get(name, []), _join(self._s[name]), _join(self._h[name]), _join(self._v[name]))
            for name in self.chosen if name in self._s
        }
        spikes = {name: _join(parts) for name, parts in self._s.items()}
        self._clear()
        return records, spikes
