"""``collect``: every ensemble diagnostic of a model on a fixed list of validation batches.

One forward pass per batch without gradients, with the hooks of :mod:`chorus.diagnostics.capture`,
gives the per-timestep accuracy, the initial-state statistics of the chosen layers, firing rates and
synaptic operations; on the first ``grad_samples`` samples one more forward and backward pass (over
T + 1 stacked copies of them, :mod:`chorus.diagnostics.gradflow`) gives the temporal gradient flow.
The model is put in eval mode and restored, parameter gradients are never touched (``torch.autograd.grad`` on layer inputs only), and the random number generators are
forked, so a training run is not perturbed by being diagnosed. See docs/architecture.md
("Diagnostics") for how the training loop calls it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from chorus.diagnostics import figures as figs
from chorus.diagnostics import names
from chorus.diagnostics.accuracy import AccuracyCounter
from chorus.diagnostics.capture import Recorder, resolve_layers
from chorus.diagnostics.energy import FiringCounter, OpsCounter, energy_metrics
from chorus.diagnostics.gradflow import GradFlowAccumulator
from chorus.diagnostics.membrane import MembraneAccumulator, membrane_metrics
from chorus.diagnostics.tables import tables as make_tables
from chorus.diagnostics.tables import to_markdown
from chorus.models.introspect import eval_mode


@dataclass
class Diagnostics:
    """What :func:`collect` measured.

    ``metrics`` use the MLflow names of :mod:`chorus.diagnostics.names`; ``figures`` are PNG files by
    name; ``tables`` Markdown by name; ``samples[layer][kind]`` the ``[T, n]`` subsample of potentials
    behind the histograms (``kind`` is ``v_prev`` or ``h_tilde``).
    """

    metrics: dict[str, float] = field(default_factory=dict)
    figures: dict[str, bytes] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)
    layers: list[str] = field(default_factory=list)
    timesteps: int = 0
    num_samples: int = 0
    samples: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)


def _device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def _hist_layers(chosen: list[str], n: int) -> list[str]:
    """First, middle and last of the chosen layers (n of them, spread evenly)."""
    if n <= 0 or not chosen:
        return []
    if len(chosen) <= n:
        return list(chosen)
    idx = sorted({round(i * (len(chosen) - 1) / (n - 1)) for i in range(n)}) if n > 1 else [0]
    return [chosen[i] for i in idx]


def batch_dim(x: torch.Tensor, batch_size: int) -> int:
    """The sample axis of a model input: 1 for time-first ``[T, B, ...]``, 0 for points ``[B, N, 3]``."""
    if x.dim() >= 2 and x.shape[1] == batch_size:
        return 1
    if x.shape[0] == batch_size:
        return 0
    raise ValueError(f"input of shape {tuple(x.shape)} has no axis of the batch size {batch_size} "
                     f"(expected [T, B, ...] or [B, ...])")


def collect(model: nn.Module, batches, *, loss_fn=None, layers=None, grad_samples: int = 8,
            max_values: int = 20000, hist_layers: int = 3, render: bool = True, seed: int = 0,
            history: list[dict] | None = None, alpha: dict[str, float] | None = None) -> Diagnostics:
    """Measure ``model`` on ``batches`` (a list of ``(x, y)``; x as the model takes it, y ``[B]``).

    ``loss_fn(logits, y)`` is the training loss (a scalar or a dict with ``"loss"``, averaged over the
    batch; default CE of the mean output) whose gradient per timestep is reported. ``layers``: names
    (or ``(name, LIF)`` pairs) of the spiking layers whose membrane statistics and gradient flow are
    measured (default: all); firing rates and energy always cover the whole model. ``grad_samples``:
    samples used for the gradient flow (0 turns it off; it costs a forward and backward pass over
    T + 1 copies of them). ``max_values``: subsample size per layer and timestep for the
    Wasserstein distance and the histograms. ``render=False`` skips the figures; otherwise
    ``figures`` holds the per-epoch set (accuracy, μ/σ, membrane histograms, gradient flow, firing
    rates, and the α trajectories when ``history`` is given: the training loop's per-epoch metric
    dicts up to and including this epoch); ``chorus report`` draws the rest (gaps, final α,
    synaptic operations) from the metrics. ``alpha``: α per MPS layer name when the caller has read
    them (under ZeRO-3 β is partitioned and gathered by the caller, chorus.train.zero3); default:
    read from the layers.
    """
    batches = list(batches)
    if not batches:
        raise ValueError("collect needs at least one (x, y) batch of validation data")
    chosen = resolve_layers(model, layers)
    chosen_names = [n for n, _ in chosen]
    device = _device(model)
    gen = torch.Generator().manual_seed(seed)
    per_batch = max(1, max_values // len(batches))
    acc = {(n, kind): MembraneAccumulator(per_batch, gen) for n in chosen_names for kind in names.MEMBRANE_KINDS}
    accuracy, firing, ops = AccuracyCounter(), FiringCounter(), OpsCounter()
    grads = GradFlowAccumulator(loss_fn)
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    state = {"T": 0}

    def measure(x, y) -> None:
        with torch.no_grad():
            logits = model(x)
            if not isinstance(logits, torch.Tensor) or logits.dim() != 3:
                raise ValueError("the model must return per-timestep logits [T, B, classes]; got "
                                 f"{getattr(logits, 'shape', type(logits).__name__)}")
            records, spikes = rec.take()
            state["T"] = logits.shape[0]
            accuracy.update(logits, y)
            for n, s in spikes.items():
                firing.update(n, s)
            for n, r in records.items():
                acc[n, "v_prev"].update(r.v_prev)
                acc[n, "h_tilde"].update(r.h_tilde)

    def gradient_pass(x, y) -> None:
        """T + 1 copies of the samples in one forward/backward (gradflow.GradFlowAccumulator.update)."""
        dim = batch_dim(x, y.shape[0])
        xs = torch.cat([x] * (state["T"] + 1), dim)
        ops.paused = True
        try:
            with torch.enable_grad():
                logits = model(xs)
                records, _ = rec.take()
                grads.update(logits, y, {n: r.x_parts for n, r in records.items()})
        finally:
            ops.paused = False

    with eval_mode(model):
        with torch.random.fork_rng(devices=fork_devices), Recorder(model, chosen, ops) as rec:
            torch.manual_seed(seed)
            grad_left = grad_samples
            for i, batch in enumerate(batches):
                if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
                    raise ValueError(f"batch {i} must be an (x, y) pair; got {type(batch).__name__}")
                x, y = batch[0].to(device), batch[1].to(device)
                measure(x, y)
                k = min(grad_left, y.shape[0])
                if k > 0:
                    grad_left -= k
                    gradient_pass(x.narrow(batch_dim(x, y.shape[0]), 0, k), y[:k])
    T = state["T"]
    num_samples = accuracy.n
    metrics = accuracy.metrics()
    for (n, kind), a in acc.items():
        metrics.update(membrane_metrics(n, kind, a))
    for kind in names.MEMBRANE_KINDS:
        per_layer = [metrics[names.membrane_w1_avg(n, kind)] for n in chosen_names
                     if names.membrane_w1_avg(n, kind) in metrics]
        if per_layer:
            metrics[names.membrane_w1_avg(None, kind)] = sum(per_layer) / len(per_layer)
    for n, lif in chosen:
        if lif.mps:
            metrics[names.alpha(n)] = alpha[n] if alpha is not None and n in alpha else float(lif.alpha.detach())
    metrics.update(firing.metrics())
    metrics.update(energy_metrics(ops, num_samples, T))
    metrics.update(grads.metrics())
    hist = _hist_layers(chosen_names, hist_layers)
    samples = {n: {kind: acc[n, kind].sample() for kind in names.MEMBRANE_KINDS} for n in hist}
    out = Diagnostics(metrics=metrics, layers=chosen_names, timesteps=T, num_samples=num_samples, samples=samples)
    out.tables = {k: to_markdown(t) for k, t in make_tables([("run", metrics)]).items()}
    if render:
        out.figures = figs.all_pngs([("run", metrics)], only=figs.EPOCH_FIGURES)
        png = figs.membrane_hist_png(samples)
        if png:
            out.figures["membrane_histograms.png"] = png
        png = figs.alpha_trajectory_png([("run", alpha_history(history, metrics))]) if history is not None else None
        if png:
            out.figures["alpha_trajectory.png"] = png
    return out


def alpha_history(history: list[dict], current: dict[str, float]) -> dict[str, list[tuple[float, float]]]:
    """layer → [(epoch, α)] from the training loop's per-epoch metric dicts up to and including this
    epoch (``epoch`` and ``mps/alpha/{layer}``, as ``chorus.train`` passes them); a layer the history
    does not mention gets its current α at the epoch after the history's last."""
    out: dict[str, list[tuple[float, float]]] = {}
    last = 0.0
    for i, m in enumerate(history):
        epoch = float(m.get("epoch", i + 1))
        last = max(last, epoch)
        for k, v in m.items():
            if k.startswith("mps/alpha/"):
                out.setdefault(k[len("mps/alpha/"):], []).append((epoch, float(v)))
    for k, v in current.items():
        if k.startswith("mps/alpha/") and k[len("mps/alpha/"):] not in out:
            out[k[len("mps/alpha/"):]] = [(last + 1, float(v))]
    return out

