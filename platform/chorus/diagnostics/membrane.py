"""Initial-state statistics: the quantitative form of the paper's Figure 1.

Subnetwork t inherits the carried potential V(t−1) (docs/method.md, "The spiking core"); the paper claims
that with zero initial potential the first subnetworks see very different initial states, and that MPS
narrows the spread. For every spiking layer and timestep t this module measures the mean and the
(population) standard deviation of V(t−1) and of H~(t) over all neurons and samples, and the gap
between consecutive timesteps t → t+1: |Δμ|, |Δσ| and the Wasserstein-1 distance between the two
empirical distributions.

Means and standard deviations are exact up to float32 rounding (per-batch two-pass moments,
merged across batches in float64). The Wasserstein distance and the
histograms use a random subsample of (sample, neuron) positions, drawn with replacement and the same
at every t; exact whenever a layer has no more values per batch than the cap.
"""
from __future__ import annotations

import torch

from chorus.diagnostics import names


def wasserstein1(a: torch.Tensor, b: torch.Tensor) -> float:
    """W1 between two equally sized 1-D empirical distributions: the mean gap of their sorted values."""
    a, b = a.reshape(-1).double(), b.reshape(-1).double()
    if a.numel() != b.numel():
        raise ValueError(f"wasserstein1 needs samples of equal size; got {a.numel()} and {b.numel()}")
    if a.numel() == 0:
        return 0.0
    return float((torch.sort(a).values - torch.sort(b).values).abs().mean())


class MembraneAccumulator:
    """Running per-timestep moments and a subsample of one layer's potentials of one kind.

    ``update(values)`` takes ``[T, B, ...]`` (V(t−1) or H~(t) of one batch). ``per_batch`` bounds the
    subsample taken from each batch, so that the total is at most ``per_batch × number of batches``.
    """

    def __init__(self, per_batch: int, generator: torch.Generator) -> None:
        self.per_batch = int(per_batch)
        self.gen = generator
        self.mean: torch.Tensor | None = None  # float64 [T]
        self.m2: torch.Tensor | None = None    # float64 [T]: sum of squared deviations
        self.count = 0
        self.samples: list[torch.Tensor] = []

    def update(self, values: torch.Tensor) -> None:
        v = values.detach().reshape(values.shape[0], -1)
        n = v.shape[1]
        var, mean = torch.var_mean(v, dim=1, correction=0)
        mean, m2 = mean.double().cpu(), var.double().cpu() * n
        if self.mean is None:
            self.mean, self.m2 = mean, m2
        elif self.mean.shape[0] != v.shape[0]:
            raise ValueError(f"all batches must have the same number of timesteps; got {v.shape[0]} after "
                             f"{self.mean.shape[0]}")
        else:  # merge the moments of two groups (Chan et al.)
            total = self.count + n
            delta = mean - self.mean
            self.mean = self.mean + delta * n / total
            self.m2 = self.m2 + m2 + delta * delta * self.count * n / total
        self.count += n
        if n <= self.per_batch:
            self.samples.append(v.float().cpu())
        else:
            idx = torch.randint(n, (self.per_batch,), generator=self.gen).to(v.device)
            self.samples.append(v[:, idx].float().cpu())

    @property
    def T(self) -> int:
        return 0 if self.mean is None else self.mean.shape[0]

    def mean_std(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-timestep mean and population standard deviation, float64 ``[T]``."""
        return self.mean, (self.m2 / self.count).clamp_min(0.0).sqrt()

    def sample(self) -> torch.Tensor:
        """The subsample, ``[T, n]`` float32."""
        return torch.cat(self.samples, 1)


def membrane_metrics(layer: str, kind: str, acc: MembraneAccumulator) -> dict[str, float]:
    """Mean/std per t and the gaps t → t+1 (|Δμ|, |Δσ|, W1), plus W1 averaged over t."""
    if acc.mean is None:
        return {}
    mean, std = acc.mean_std()
    sample = acc.sample()
    out: dict[str, float] = {}
    T = acc.T
    w1s = []
    for i in range(T):
        t = i + 1
        out[names.membrane("mean", t, layer, kind)] = float(mean[i])
        out[names.membrane("std", t, layer, kind)] = float(std[i])
        if i + 1 < T:
            out[names.membrane("dmean", t, layer, kind)] = float((mean[i + 1] - mean[i]).abs())
            out[names.membrane("dstd", t, layer, kind)] = float((std[i + 1] - std[i]).abs())
            w1 = wasserstein1(sample[i], sample[i + 1])
            out[names.membrane("w1", t, layer, kind)] = w1
            w1s.append(w1)
    if w1s:
        out[names.membrane_w1_avg(layer, kind)] = sum(w1s) / len(w1s)
    return out
