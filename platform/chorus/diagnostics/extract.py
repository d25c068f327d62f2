"""Turn a flat metrics dict (as logged to MLflow) back into per-layer, per-timestep series.

Figures, tables and ``chorus report`` all read the diagnostics through these functions, so a run
read back from MLflow and a fresh :class:`~chorus.diagnostics.Diagnostics` render the same way.
Layers are ordered by a natural sort of their qualified names (``block.2`` before ``block.10``).
"""
from __future__ import annotations

import math
import re

from chorus.diagnostics import names


def natural_key(s: str):
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s)]


def _series(pairs: dict[int, float], base: int = 1) -> list[float]:
    """Values indexed from ``base`` upwards; a missing index becomes NaN."""
    if not pairs:
        return []
    n = max(pairs) + 1 - base
    return [pairs.get(i + base, math.nan) for i in range(n)]


ACC_SOURCES = {"test/": "test split", "val/": "validation split", "diag/": "diagnostics subset"}


def accuracy_source(metrics: dict[str, float]) -> str | None:
    """The prefix whose per-timestep accuracies :func:`accuracy` reads: ``test/``, ``val/`` or ``diag/``."""
    for prefix in ACC_SOURCES:
        if any(re.match(rf"^{prefix}acc_(step|first)_\d+$", k) for k in metrics):
            return prefix
    return None


def accuracy(metrics: dict[str, float]) -> tuple[list[float], list[float]]:
    """(accuracy of step t, accuracy of the first k) for t, k = 1..T.

    The training loop logs ``test/acc_step_{t}`` and ``val/acc_step_{t}`` on whole splits; the
    diagnostics subset gives ``diag/acc_step_{t}``. The first source present (test, val, diag) is used
    as a whole, never mixed.
    """
    prefix = accuracy_source(metrics)
    step, first = {}, {}
    for k, v in metrics.items():
        m = re.match(rf"^{prefix}acc_(step|first)_(\d+)$", k) if prefix else None
        if m:
            (step if m.group(1) == "step" else first)[int(m.group(2))] = v
    return _series(step), _series(first)


def membrane(metrics: dict[str, float], kind: str = "v_prev") -> dict[str, dict[str, list[float]]]:
    """layer → {mean, std: per t; dmean, dstd, w1: per gap t→t+1}."""
    raw: dict[str, dict[str, dict[int, float]]] = {}
    for k, v in metrics.items():
        p = names.parse(k)
        if p and p[0] == "membrane" and p[1][0] == kind:
            _, stat, t, layer = p[1]
            raw.setdefault(layer, {}).setdefault(stat, {})[t] = v
    return {layer: {stat: _series(d) for stat, d in raw[layer].items()} for layer in sorted(raw, key=natural_key)}


def _by_layer(metrics: dict[str, float], family: str, base: int) -> dict[str, list[float]]:
    raw: dict[str, dict[int, float]] = {}
    for k, v in metrics.items():
        p = names.parse(k)
        if p and p[0] == family:
            layer, i = p[1]
            raw.setdefault(layer, {})[i] = v
    return {layer: _series(raw[layer], base) for layer in sorted(raw, key=natural_key)}


def firing(metrics: dict[str, float]) -> dict[str, list[float]]:
    """layer → firing rate per timestep t = 1..T."""
    return _by_layer(metrics, "firing", 1)


def gradflow(metrics: dict[str, float]) -> dict[str, list[float]]:
    """layer → per-sample gradient norm by distance d = 0..T−1."""
    return _by_layer(metrics, "gradflow", 0)


def grad_steps(metrics: dict[str, float]) -> dict[str, list[float]]:
    """layer → per-sample norm of ∂L/∂X(t), t = 1..T."""
    return _by_layer(metrics, "grad_step", 1)


def gradflow_rel(metrics: dict[str, float]) -> list[float]:
    """Geometric mean over layers of the gradient ratio d steps back / direct (per t', then averaged;
    see :mod:`chorus.diagnostics.gradflow`), d = 0..T−1."""
    pairs = {}
    for k, v in metrics.items():
        m = re.match(r"^gradflow/rel_(\d+)$", k)
        if m:
            pairs[int(m.group(1))] = v
    return _series(pairs, 0)


def _single(metrics: dict[str, float], family: str) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        p = names.parse(k)
        if p and p[0] == family:
            out[p[1][0]] = v
    return {layer: out[layer] for layer in sorted(out, key=natural_key)}


def alphas(metrics: dict[str, float]) -> dict[str, float]:
    """layer → α of every MPS layer."""
    return _single(metrics, "alpha")


def sops(metrics: dict[str, float]) -> dict[str, float]:
    """synaptic layer → operations per sample."""
    return _single(metrics, "sop")


def layer_average(per_layer: dict[str, list[float]]) -> list[float]:
    """Mean over layers, index by index (ignoring NaN)."""
    if not per_layer:
        return []
    n = max(len(v) for v in per_layer.values())
    out = []
    for i in range(n):
        vals = [v[i] for v in per_layer.values() if i < len(v) and not math.isnan(v[i])]
        out.append(sum(vals) / len(vals) if vals else math.nan)
    return out
