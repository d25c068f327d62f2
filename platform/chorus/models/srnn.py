"""SRNN for SHD: recurrent spiking layers over the 700 input channels (the paper's 1D speech backbone).

Each layer l computes, per timestep, the input current ``I(t) = BN(W x(t)) + R s(t−1)`` from the
layer's input and its own spikes of the previous step, and runs it through a LIF. The feed-forward
part ``BN(W x)`` is one matrix product and one BatchNorm over all timesteps (time folded into the
batch); only the recurrent product and the neuron are stepped. The BatchNorm (``bn=True``) keeps the
sparse SHD spike input from leaving a fresh network silent; with ``bn=False`` it is ``W x + b``.

The chorus ``LIF`` layer takes whole sequences, so the recurrent layer steps the same equations
(docs/method.md, "The spiking core") with :func:`lif_step`, using its ``LIF``'s settings and β; the stepped
spikes are the layer's output (the neuron runs once per timestep, never a second time). With the
recurrent weights at zero the layer gives exactly the spikes of ``LIF(BN(W x))`` (tested).

The ``LIF`` module itself is never called, so its forward hooks do not fire. Diagnostics see the layer
through ``stepped_lif`` and ``step_tap``: with ``lif.record_states`` set the layer fills
``lif.last_states`` from the loop, and a ``step_tap(inputs, spikes)`` callback (set by
:class:`chorus.diagnostics.capture.Recorder`) receives the per-step inputs X(t) = I(t) + R s(t−1)
(each ``[1, B, fout]``, the tensors the steps used, in the autograd graph) and the output spikes, so
∂L/∂X(t) covers both the direct path and the recurrent one through s(t) → X(t+1).
"""
from __future__ import annotations

import torch
from torch import nn

from chorus.models.introspect import SpikingModel
from chorus.models.layers import check_input
from chorus.models.neuron_config import NeuronConfig
from chorus.models.registry import register
from chorus.neurons import LIF, LIFStates
from chorus.neurons.reference import initial_h_tilde
from chorus.neurons.reference import lif_step as reference_step


def lif_step(lif: LIF, x: torch.Tensor, v: torch.Tensor, h_prev: torch.Tensor | None, alpha: torch.Tensor | None):
    """One timestep of ``lif``'s neuron: returns ``(spikes, V(t), H~(t))`` from X(t), V(t−1), H~(t−1).

    The step of the reference neuron (:func:`chorus.neurons.reference.lif_step`) with ``lif``'s settings.
    """
    return reference_step(lif.p, x, v, h_prev, alpha)


class RecurrentLIFLayer(nn.Module):
    """``[T, B, fin]`` → spikes ``[T, B, fout]`` with recurrent weights on the layer's own spikes."""

    def __init__(self, fin: int, fout: int, neuron: NeuronConfig, bn: bool = True):
        super().__init__()
        self.fc = nn.Linear(fin, fout, bias=not bn)
        self.bn = nn.BatchNorm1d(fout) if bn else nn.Identity()
        self.rec = nn.Linear(fout, fout, bias=False)
        self.lif = neuron.make()
        self.step_tap = None  # diagnostics callback(inputs, spikes), see the module docstring

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[:2]
        current = self.bn(self.fc(x.flatten(0, 1))).unflatten(0, (T, B))
        out_dtype = current.dtype
        with torch.autocast(device_type=current.device.type, enabled=False):
            # the membrane stays in fp32 under autocast, as in the LIF layer itself
            spikes = self._run(current if current.dtype == torch.float64 else current.float())
        return spikes.to(out_dtype)

    @property
    def stepped_lif(self) -> LIF:
        """The ``LIF`` whose equations this layer steps itself (for the diagnostics' recorder)."""
        return self.lif

    def _run(self, current: torch.Tensor) -> torch.Tensor:
        lif = self.lif
        tap, record = self.step_tap, lif.record_states
        if tap is not None and torch.is_grad_enabled() and not current.requires_grad:
            # frozen weights: make the current a leaf so that ∂L/∂X(t) exists (as the recorder does for a LIF)
            current = current.detach().requires_grad_(True)
        if lif.v_init == "uniform":  # drawn exactly as LIF.forward draws it
            v = torch.rand(current.shape[1:], device=current.device, dtype=current.dtype) * lif.v_init_scale
        else:
            v = current.new_full(current.shape[1:], lif.p.vr)
        h = initial_h_tilde(lif.p, v)  # None under mps_init "first": H~(1) = H(1)
        alpha = torch.sigmoid(lif.beta).to(current.dtype) if lif.beta is not None else None
        w_dtype = self.rec.weight.dtype  # bf16 when the whole model is cast (DeepSpeed bf16)
        s = torch.zeros_like(v)
        inputs, spikes, h_tilde, v_prev = [], [], [], []
        for t in range(current.shape[0]):
            x_t = (current[t] + self.rec(s.to(w_dtype)).to(current.dtype)).unsqueeze(0)
            if record:
                v_prev.append(v.detach())
            s, v, h = lif_step(lif, x_t[0], v, h, alpha)
            inputs.append(x_t)
            spikes.append(s)
            if record:
                h_tilde.append(h.detach())
        out = torch.stack(spikes)
        if record:
            lif.last_states = LIFStates(torch.stack(h_tilde), torch.stack(v_prev))
        if tap is not None:
            tap(inputs, out)
        return out


class SRNN(SpikingModel):
    """Recurrent spiking layers (``hidden`` sizes) and a linear readout per timestep."""

    def __init__(self, num_classes: int, in_shape: tuple[int], neuron: NeuronConfig,
                 hidden: tuple[int, ...] = (256, 256), dropout: float = 0.0, bn: bool = True):
        super().__init__()
        if not hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
            raise ValueError(f"hidden={hidden!r} must be a non-empty sequence of positive layer sizes")
        self.in_shape = tuple(in_shape)
        sizes = (in_shape[0], *hidden)
        self.layers = nn.Sequential(*[RecurrentLIFLayer(a, b, neuron, bn) for a, b in zip(sizes[:-1], sizes[1:])])
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.readout = nn.Linear(hidden[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(type(self).__name__, x, self.in_shape)
        return self.readout(self.dropout(self.layers(x)))


@register("srnn", "sequence", 100, "recurrent SNN for SHD: recurrent LIF layers (default 2 x 256) + readout")
def srnn(num_classes, in_shape, neuron, hidden=(256, 256), dropout=0.0, bn=True):
    hidden = (hidden,) if isinstance(hidden, int) and not isinstance(hidden, bool) else tuple(hidden)
    return SRNN(num_classes, in_shape, neuron, hidden, dropout, bn)
