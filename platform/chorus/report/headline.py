"""The headline numbers of a report: one row per claim of docs/paper.md, one column per run, plus Δ.

- accuracy of the ensemble, of the first timestep alone and of the first k = 1 (Table 1's k = 1);
- the spread of initial states across timesteps: mean Wasserstein-1 gap of V(t−1) and of H~(t)
  between consecutive timesteps, averaged over layers (Figure 1, quantified);
- temporal gradient flow: gradient reaching d = T−1 steps back, relative to the direct gradient at the
  same loss timestep (``gradflow/rel_{T−1}``; MPS vs vanilla);
- mean α over MPS layers; mean firing rate; energy per sample and its ratio to the same network as an
  ANN.
"""
from __future__ import annotations

import math

from chorus.diagnostics import extract, names
from chorus.diagnostics.tables import Table, fmt, fmt_delta


def _acc(m: dict[str, float], what: str) -> float:
    prefix = extract.accuracy_source(m)
    if prefix is None:
        return math.nan
    # Only the source the row is labelled with: a missing test/acc stays missing rather than showing
    # diag/acc (a different sample set) under the "test split" label (extract.accuracy: never mixed).
    return m.get(f"{prefix}{'acc' if what == 'ensemble' else what}", math.nan)


def _rows(m: dict[str, float]) -> list[tuple[str, float, str]]:
    rel = extract.gradflow_rel(m)
    a = extract.alphas(m)
    src = extract.ACC_SOURCES.get(extract.accuracy_source(m) or "", "")
    return [
        (f"accuracy, ensemble of all T outputs (%) [{src}]", _acc(m, "ensemble"), "pct"),
        ("accuracy of timestep 1 alone (%)", _acc(m, "acc_step_1"), "pct"),
        ("accuracy of the last timestep alone (%)",
         extract.accuracy(m)[0][-1] if extract.accuracy(m)[0] else math.nan, "pct"),
        ("initial-state gap: mean W1 of V(t−1), t→t+1", m.get(names.membrane_w1_avg(None, "v_prev"), math.nan), "num"),
        ("initial-state gap: mean W1 of H~(t), t→t+1", m.get(names.membrane_w1_avg(None, "h_tilde"), math.nan), "num"),
        (f"gradient reaching d = {len(rel) - 1} steps back / direct" if rel else "gradient flow ratio",
         rel[-1] if rel else math.nan, "num"),
        ("mean α over MPS layers", sum(a.values()) / len(a) if a else math.nan, "num"),
        ("mean firing rate", m.get(names.firing(None), math.nan), "num"),
        ("energy per sample (pJ)", m.get(names.ENERGY_PJ, math.nan), "num"),
        ("energy relative to the same network as an ANN", m.get(names.ENERGY_RATIO, math.nan), "num"),
    ]


def headline_table(runs) -> Table:
    """``runs = [(label, metrics)]`` → the headline table (with Δ to the first run when there are two)."""
    per_run = [_rows(m) for _, m in runs]
    header = ["quantity"] + [label for label, _ in runs]
    if len(runs) > 1:
        header += [f"Δ {label}−{runs[0][0]}" for label, _ in runs[1:]]
    rows = []
    for i, (title, _, kind) in enumerate(per_run[0]):
        vals = [r[i][1] for r in per_run]
        row = [title] + [fmt(v, kind) for v in vals]
        if len(runs) > 1:
            row += [fmt_delta(v - vals[0], kind) for v in vals[1:]]
        rows.append(row)
    return Table("Headline numbers", header, rows)


def headline_values(metrics: dict[str, float]) -> dict[str, float]:
    """The headline quantities of one run as numbers (for scripts and tests)."""
    return {title: value for title, value, _ in _rows(metrics)}
