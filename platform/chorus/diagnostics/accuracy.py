"""Per-timestep and anytime accuracy: the paper's Table 1 for any run.

For per-timestep logits o_1..o_T (``[T, B, C]``) and labels y:

- step t:   the prediction argmax o_t of subnetwork t alone;
- first k:  the prediction argmax (1/k) Σ_{t≤k} o_t, i.e. the network run for only k timesteps
            (anytime inference; k = T is the ensemble output the model is trained on).
"""
from __future__ import annotations

import torch

from chorus.diagnostics import names


class AccuracyCounter:
    """Counts correct predictions per timestep and per prefix length over batches."""

    def __init__(self) -> None:
        self.step: torch.Tensor | None = None
        self.first: torch.Tensor | None = None
        self.n = 0

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        if logits.dim() != 3:
            raise ValueError(f"logits must be per-timestep [T, B, classes]; got shape {tuple(logits.shape)}")
        if target.dim() != 1 or target.shape[0] != logits.shape[1]:
            raise ValueError(f"labels must have shape [B] = [{logits.shape[1]}]; got {tuple(target.shape)}")
        lf = logits.detach().float()
        T = lf.shape[0]
        y = target.to(lf.device)
        step = (lf.argmax(-1) == y).sum(1).double().cpu()
        prefix_mean = lf.cumsum(0) / torch.arange(1, T + 1, device=lf.device, dtype=lf.dtype).view(T, 1, 1)
        first = (prefix_mean.argmax(-1) == y).sum(1).double().cpu()
        if self.step is None:
            self.step, self.first = step, first
        elif self.step.shape[0] != T:
            raise ValueError(f"all batches must have the same number of timesteps; got {T} after {self.step.shape[0]}")
        else:
            self.step += step
            self.first += first
        self.n += int(y.shape[0])

    def metrics(self) -> dict[str, float]:
        if self.n == 0 or self.step is None:
            return {}
        out = {}
        for i in range(self.step.shape[0]):
            out[names.acc_step(i + 1)] = float(self.step[i] / self.n)
            out[names.acc_first(i + 1)] = float(self.first[i] / self.n)
        out[names.ACC] = out[names.acc_first(self.step.shape[0])]
        return out


def per_timestep_accuracy(logits: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """The metrics of :class:`AccuracyCounter` for one batch."""
    c = AccuracyCounter()
    c.update(logits, target)
    return c.metrics()
