"""MLflow metric names of the diagnostics, built and parsed in one place.

docs/method.md ("Recipes and runs") fixes ``membrane/mean_{t}/{layer}``, ``membrane/std_{t}/{layer}`` and
``mps/alpha/{layer}``; docs/architecture.md adds ``firing/{layer}/{t}`` and ``energy/...``. Timesteps
``t`` and prefix lengths ``k`` count from 1 as in the paper; the distance to the loss ``d`` from 0.

Accuracy measured on the diagnostics subset is named ``diag/...`` so that it never collides with the
training loop's ``val/...`` metrics, which cover the whole validation split.
"""
from __future__ import annotations

import re

# Per-timestep accuracy on the diagnostics subset (paper, Table 1: "run with only the first k steps").
ACC = "diag/acc"


def acc_step(t: int) -> str:
    """Accuracy of the output at timestep t alone."""
    return f"diag/acc_step_{t}"


def acc_first(k: int) -> str:
    """Accuracy of the mean of the first k outputs (anytime inference)."""
    return f"diag/acc_first_{k}"


# Membrane statistics. ``kind`` "" is the carried potential V(t-1) (the initial state of subnetwork t,
# docs/method.md); "htilde_" is the smoothed potential H~(t).
MEMBRANE_KINDS = {"v_prev": "", "h_tilde": "htilde_"}
MEMBRANE_STATS = ("mean", "std")
GAP_STATS = ("dmean", "dstd", "w1")


def membrane(stat: str, t: int, layer: str, kind: str = "v_prev") -> str:
    """``stat`` in mean/std (at timestep t) or dmean/dstd/w1 (the gap between t and t+1)."""
    return f"membrane/{MEMBRANE_KINDS[kind]}{stat}_{t}/{layer}"


def membrane_w1_avg(layer: str | None = None, kind: str = "v_prev") -> str:
    """Mean over t of the Wasserstein-1 gap, for one layer or (layer=None) averaged over layers."""
    base = f"membrane/{MEMBRANE_KINDS[kind]}w1_avg"
    return base if layer is None else f"{base}/{layer}"


def alpha(layer: str) -> str:
    return f"mps/alpha/{layer}"


def firing(layer: str | None, t: int | None = None) -> str:
    """Firing rate of a layer at timestep t, of a layer over all t, or (layer=None) of all neurons."""
    if layer is None:
        return "firing/mean"
    return f"firing/{layer}" if t is None else f"firing/{layer}/{t}"


def sop(layer: str) -> str:
    """Synaptic operations per sample of one synaptic layer (ACs, or MACs for the first layer)."""
    return f"sop/{layer}"


ENERGY_AC = "energy/ac_per_sample"
ENERGY_MAC = "energy/mac_per_sample"
ENERGY_PJ = "energy/pj_per_sample"
ENERGY_ANN_PJ = "energy/ann_pj_per_sample"
ENERGY_RATIO = "energy/ratio_to_ann"


def gradflow(layer: str | None, d: int) -> str:
    """Per-sample norm of ∂ℓ_t'/∂X(t'−d) for one layer; layer=None: geometric mean over layers of the
    ratio ‖∂ℓ_t'/∂X(t'−d)‖ / ‖∂ℓ_t'/∂X(t')‖ taken per t' and then averaged (see ``gradflow``)."""
    return f"gradflow/rel_{d}" if layer is None else f"gradflow/{layer}/dt_{d}"


def gradflow_zero_layers(d: int) -> str:
    """Number of layers left out of ``gradflow/rel_{d}`` because their ratio at d is 0 or undefined."""
    return f"gradflow/zero_layers_{d}"


# Number of (layer, t') whose direct gradient ‖∂ℓ_t'/∂X(t')‖ is 0, so that no ratio is defined there.
GRADFLOW_ZERO_DIRECT = "gradflow/zero_direct"


def grad_step(layer: str, t: int) -> str:
    """Per-sample norm of the training loss's gradient reaching the input X(t) of a layer."""
    return f"grad/{layer}/step_{t}"


_PATTERNS = {
    "acc_step": re.compile(r"^diag/acc_step_(\d+)$"),
    "acc_first": re.compile(r"^diag/acc_first_(\d+)$"),
    "membrane": re.compile(r"^membrane/(htilde_)?(mean|std|dmean|dstd|w1)_(\d+)/(.+)$"),
    "firing": re.compile(r"^firing/(.+)/(\d+)$"),
    "gradflow": re.compile(r"^gradflow/(.+)/dt_(\d+)$"),
    "grad_step": re.compile(r"^grad/(.+)/step_(\d+)$"),
    "alpha": re.compile(r"^mps/alpha/(.+)$"),
    "sop": re.compile(r"^sop/(.+)$"),
}


def parse(name: str) -> tuple[str, tuple] | None:
    """Split a metric name into (family, fields); None when it is not a per-layer/per-t diagnostic.

    membrane → (kind, stat, t, layer); firing → (layer, t); gradflow → (layer, d);
    grad_step → (layer, t); acc_step/acc_first → (t,); alpha/sop → (layer,).
    """
    for family, pattern in _PATTERNS.items():
        m = pattern.match(name)
        if not m:
            continue
        if family == "membrane":
            kind = "h_tilde" if m.group(1) else "v_prev"
            return family, (kind, m.group(2), int(m.group(3)), m.group(4))
        if family in ("firing", "gradflow", "grad_step"):
            return family, (m.group(1), int(m.group(2)))
        if family in ("acc_step", "acc_first"):
            return family, (int(m.group(1)),)
        return family, (m.group(1),)
    return None
