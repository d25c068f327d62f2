"""Temporal gradient flow: how much gradient reaches a layer's input d timesteps before the loss.

The paper claims that MPS adds a direct path H~(t−1) → H~(t) for gradients and so eases temporal
gradient vanishing. Measured here, per spiking layer with input X(t):

- ``gradflow/{layer}/dt_{d}``: with ℓ_t' = CE(o_t', y) the loss of subnetwork t' alone, the
  per-sample L2 norm ‖∂ℓ_t'/∂X(t'−d)‖ averaged over samples and over every t' with t'−d ≥ 1. d = 0 is
  the direct path within one timestep; d > 0 is gradient that travelled d steps back through the
  membrane (the recursion in ``chorus.neurons.fused``).
- ``gradflow/rel_{d}``: the ratio is taken per loss timestep t' before any averaging. For each layer
  and each t' with t' − d ≥ 1, r(t', d) = Σ_samples ‖∂ℓ_t'/∂X(t'−d)‖ / Σ_samples ‖∂ℓ_t'/∂X(t')‖ (the
  gradient that travelled d steps back from t' over the direct gradient at the same t'); the layer's
  ratio is the mean of r(t', d) over those t', and ``rel_{d}`` the geometric mean of the layers'
  ratios (a geometric mean, because the ratios of different layers differ by orders of magnitude).
  (dt_d / dt_0 would instead compare the losses at t' = d+1..T with the losses at all t'.) Zeros are
  left out explicitly rather than averaged: a t' with no direct gradient (r undefined) is skipped and
  counted in ``gradflow/zero_direct`` (per layer and t', summed); a layer whose ratio at d is 0 or
  undefined is left out of the geometric mean (which it would otherwise drive to 0) and counted in
  ``gradflow/zero_layers_{d}``; if every layer's ratio at d is 0, ``rel_{d}`` is 0. For a single layer
  fed straight to the loss, a vanilla LIF decays it by (1 − 1/τ)(1 − S) per step, MPS by
  α + (1 − α)(1 − 1/τ)(1 − S); in a deep network the paths through later layers add up.
- ``grad/{layer}/step_{t}``: the per-sample norm of the training loss's gradient ∂L/∂X(t) (the loss
  the run trains on, e.g. CE of the mean output + γ·TASG), i.e. how much each timestep of a layer is
  trained.

Per-sample gradients come from summing the per-sample losses (CE with reduction "sum"; a batch-mean
``loss_fn`` is multiplied by B). The model runs in eval mode, so samples do not interact: stacking
T + 1 copies of the samples, one per loss, gives all the gradients in one backward pass.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from chorus.diagnostics import names


def default_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CE of the ensemble output (mean over timesteps), averaged over the batch."""
    return F.cross_entropy(logits.float().mean(0), target)


def _loss_value(out) -> torch.Tensor:
    if isinstance(out, dict):
        if "loss" not in out:
            raise ValueError(f"loss_fn returned a dict without a 'loss' key (keys: {', '.join(out)})")
        return out["loss"]
    if not isinstance(out, torch.Tensor) or out.dim() != 0:
        raise ValueError("loss_fn must return a scalar tensor or a dict with a scalar 'loss'")
    return out


def _per_sample_norms(grads: list[torch.Tensor | None], parts: list[torch.Tensor]) -> torch.Tensor:
    """Norm per (t, sample) of the gradient over one layer's calls joined in time → ``[T, B]``."""
    gs = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, parts)]
    g = gs[0] if len(gs) == 1 else torch.cat(gs, 0)
    return g.detach().reshape(g.shape[0], g.shape[1], -1).norm(dim=2).double()


class GradFlowAccumulator:
    """Sums per-sample gradient norms by layer and distance d (and by layer and t for the loss_fn)."""

    def __init__(self, loss_fn=None) -> None:
        self.loss_fn = loss_fn or default_loss
        self.flow: dict[str, torch.Tensor] = {}   # layer → [T] sum of norms by d
        self.flow_n: dict[str, torch.Tensor] = {}  # layer → [T] number of (t', sample) terms by d
        self.step: dict[str, torch.Tensor] = {}   # layer → [T] sum of norms by t
        self.pair: dict[str, torch.Tensor] = {}   # layer → [T, T] sum of norms by (t' − 1, d)
        self.n = 0

    def update(self, logits: torch.Tensor, target: torch.Tensor, inputs: dict[str, list[torch.Tensor]]) -> None:
        """One forward pass on T + 1 stacked copies of the same k samples (``logits`` ``[T, (T+1)·k, C]``,
        ``target`` the k labels); ``inputs``: layer → the input tensors of its calls, still in the graph.

        Copy j < T carries the loss of subnetwork j + 1 alone, copy T the training loss, so a single
        backward pass gives every per-timestep gradient (samples are independent in eval mode).
        """
        layers = [n for n, parts in inputs.items() if any(p.requires_grad for p in parts)]
        if not layers:
            raise ValueError("gradient flow needs the forward pass to run with gradients enabled")
        T, k = logits.shape[0], target.shape[0]
        if logits.shape[1] != (T + 1) * k:
            raise ValueError(f"gradient flow expects {T + 1} copies of {k} samples; got {logits.shape[1]} outputs")
        lf = logits.float()
        loss = sum(F.cross_entropy(lf[j, j * k:(j + 1) * k], target, reduction="sum") for j in range(T))
        loss = loss + _loss_value(self.loss_fn(logits[:, T * k:], target)) * k
        flat = [p for n in layers for p in inputs[n]]
        gs = torch.autograd.grad(loss, flat, allow_unused=True)
        i = 0
        for n in layers:
            c = len(inputs[n])
            norms = _per_sample_norms(list(gs[i:i + c]), inputs[n])  # [T, (T+1)·k]
            i += c
            if norms.shape[0] != T:
                raise ValueError(f"layer {n} runs {norms.shape[0]} timesteps but the model outputs {T}")
            flow = self.flow.setdefault(n, torch.zeros(T, dtype=torch.float64))
            flow_n = self.flow_n.setdefault(n, torch.zeros(T, dtype=torch.float64))
            step = self.step.setdefault(n, torch.zeros(T, dtype=torch.float64))
            pair = self.pair.setdefault(n, torch.zeros(T, T, dtype=torch.float64))
            for j in range(T):           # copy j: the loss of timestep t' = j + 1
                per_t = norms[:, j * k:(j + 1) * k].sum(1).cpu()
                for d in range(j + 1):
                    flow[d] += per_t[j - d]
                    flow_n[d] += k
                    pair[j, d] += per_t[j - d]
            step += norms[:, T * k:].sum(1).cpu()
        self.n += k

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.n == 0:
            return out
        rel: dict[int, list[float]] = {}     # d → the positive per-layer ratios
        zeros: dict[int, int] = {}           # d → layers whose ratio is exactly 0
        undefined: dict[int, int] = {}       # d → layers with no t' that has a direct gradient
        zero_direct = 0
        for n, sums in self.flow.items():
            T = sums.shape[0]
            for d in range(T):
                out[names.gradflow(n, d)] = float(sums[d] / self.flow_n[n][d])
            for t in range(T):
                out[names.grad_step(n, t + 1)] = float(self.step[n][t] / self.n)
            pair = self.pair[n]
            direct = pair[:, 0]                       # by t' − 1: Σ_samples ‖∂ℓ_t'/∂X(t')‖
            zero_direct += int((direct == 0).sum())
            for d in range(T):
                ratios = [float(pair[j, d] / direct[j]) for j in range(d, T) if direct[j] > 0]
                rel.setdefault(d, [])
                if not ratios:
                    undefined[d] = undefined.get(d, 0) + 1
                elif sum(ratios) > 0:
                    rel[d].append(sum(ratios) / len(ratios))
                else:
                    zeros[d] = zeros.get(d, 0) + 1
        for d, vals in sorted(rel.items()):
            if vals:
                out[names.gradflow(None, d)] = math.exp(sum(math.log(v) for v in vals) / len(vals))
            elif zeros.get(d):
                out[names.gradflow(None, d)] = 0.0   # every layer with a defined ratio has exactly 0
            out[names.gradflow_zero_layers(d)] = float(zeros.get(d, 0) + undefined.get(d, 0))
        out[names.GRADFLOW_ZERO_DIRECT] = float(zero_direct)
        return out
