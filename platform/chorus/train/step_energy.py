"""Energy per sample and per timestep, for early exit (docs/method.md, "Recipes and runs").

The same synaptic-operation model as :mod:`chorus.diagnostics.energy` (0.9 pJ per accumulate, 4.6 pJ
per multiply-accumulate; the first synaptic layer to run, and any layer fed real values, counted as
dense MACs; spike-driven layers as one AC per input spike and connected output), but kept per
(timestep, sample) instead of summed: a sample that stops at step t costs the first t entries of its
column. Every layer runs time folded into the batch (rows t-major, ``[T·B, ...]``) or time-first
(``[T, B, ...]``), so each row of a layer's input belongs to one (t, b).
"""
from __future__ import annotations

import torch

from chorus.diagnostics.energy import E_AC_PJ, E_MAC_PJ, SYNAPTIC, dense_macs, real_valued


def event_ops_per_row(module, x: torch.Tensor, rows: int) -> torch.Tensor:
    """:func:`chorus.diagnostics.energy.event_ops` kept per row of ``x`` (viewed as ``[rows, ...]``):
    float64 ``[rows]``."""
    w = x.detach().float().abs()
    if isinstance(module, torch.nn.Linear):
        return w.reshape(rows, -1).sum(1, dtype=torch.float64) * module.out_features
    g = module.groups
    w_g = w.unflatten(1, (g, module.in_channels // g)).sum(2)
    ones = torch.ones((g, 1, *module.kernel_size), dtype=torch.float32, device=x.device)
    with torch.autocast(device_type=x.device.type, enabled=False):
        counts = module._conv_forward(w_g, ones, None)
    return counts.reshape(rows, -1).sum(1, dtype=torch.float64) * (module.out_channels // g)


class StepEnergy:
    """Forward hooks that add each batch's energy per (timestep, sample) to :attr:`columns`.

    ``attach(model, T, time_first)`` before the passes (``time_first``: the model's input is
    ``[T, B, ...]``; else ``[B, ...]``, e.g. point clouds), ``detach()`` after; :meth:`energy` is ``[T, N]`` pJ over all
    samples seen, in the order the model saw them.
    """

    def __init__(self):
        self.handles, self.columns, self.order = [], [], []
        self.T = self.B = None
        self.time_first = True
        self._batch = None

    def attach(self, model, T: int, time_first: bool = True) -> None:
        self.T, self.time_first = T, time_first
        self.handles.append(model.register_forward_pre_hook(self._start))
        self.handles.append(model.register_forward_hook(self._end))
        for name, m in model.named_modules():
            if isinstance(m, SYNAPTIC):
                self.handles.append(m.register_forward_hook(self._layer(name)))

    def detach(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def _start(self, model, args):
        x = args[0]
        self.B = x.shape[1] if self.time_first else x.shape[0]
        self._batch = torch.zeros(self.T, self.B, dtype=torch.float64)

    def _end(self, model, args, out):
        self.columns.append(self._batch)
        self._batch = None

    def _rows(self, x: torch.Tensor) -> int:
        T, B = self.T, self.B
        if x.shape[0] == T * B or (x.dim() >= 3 and x.shape[0] == T and x.shape[1] == B):
            return T * B
        raise ValueError(f"early exit: a layer input of shape {tuple(x.shape)} is neither [T·B, ...] nor "
                         f"[T, B, ...] with T = {T}, B = {B}; its energy per timestep is unknown")

    def _layer(self, name: str):
        def hook(module, args, out):
            if self._batch is None:
                return
            x = args[0]
            if name not in self.order:
                self.order.append(name)
            rows = self._rows(x)
            if name == self.order[0] or real_valued(module, x):
                per_row = torch.full((rows,), dense_macs(module, x, out) / rows * E_MAC_PJ, dtype=torch.float64)
            else:
                per_row = event_ops_per_row(module, x, rows) * E_AC_PJ
            self._batch += per_row.cpu().view(self.T, self.B)
        return hook

    def energy(self) -> torch.Tensor:
        """``[T, N]`` pJ: the energy of timestep t of sample n."""
        return torch.cat(self.columns, 1) if self.columns else torch.zeros(self.T or 0, 0, dtype=torch.float64)
