"""Tables of the diagnostics (per-timestep accuracy, membrane statistics, energy, α, gradient flow,
firing), for one run or for several side by side with the difference to the first run.

``tables(runs)`` returns :class:`Table` objects; ``to_markdown`` renders one. The HTML report renders
the same objects, so the Markdown summary and the HTML report always show the same numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from chorus.diagnostics import extract, names


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]


@dataclass
class _Spec:
    title: str
    key: str
    columns: list[tuple[str, str]]  # (name, format: "pct" | "num" | "int")
    rows: dict[str, list[float]]


def fmt(v: float, kind: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if kind == "pct":
        return f"{100 * v:.2f}"
    if kind == "int":
        return f"{v:,.0f}"
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1e5 or a < 1e-3:
        return f"{v:.3e}"
    return f"{v:.4f}"


def fmt_delta(v: float, kind: str) -> str:
    s = fmt(v, kind)
    return s if s in ("–", "0") or s.startswith("-") else "+" + s


def _specs(m: dict[str, float]) -> dict[str, _Spec]:
    specs: dict[str, _Spec] = {}
    step, first = extract.accuracy(m)
    if step or first:
        T = max(len(step), len(first))
        rows = {str(t + 1): [step[t] if t < len(step) else math.nan, first[t] if t < len(first) else math.nan]
                for t in range(T)}
        source = extract.ACC_SOURCES[extract.accuracy_source(m)]
        specs["accuracy"] = _Spec(f"Per-timestep accuracy (%), {source}", "t / k",
                                  [("step t alone", "pct"), ("first k (anytime)", "pct")], rows)
    v, h = extract.membrane(m, "v_prev"), extract.membrane(m, "h_tilde")
    if v or h:
        cols = [("μ V(t−1)", "num"), ("σ V(t−1)", "num"), ("W1 V t→t+1", "num"),
                ("μ H~(t)", "num"), ("σ H~(t)", "num"), ("W1 H~ t→t+1", "num")]
        avg = {}
        for src, stats in (("v", v), ("h", h)):
            for stat in ("mean", "std", "w1"):
                avg[src, stat] = extract.layer_average({k: s.get(stat, []) for k, s in stats.items()})
        T = max(len(avg["v", "mean"]), len(avg["h", "mean"]))
        pick = lambda xs, i: xs[i] if i < len(xs) else math.nan  # noqa: E731
        rows = {str(t + 1): [pick(avg[src, stat], t) for src in ("v", "h") for stat in ("mean", "std", "w1")]
                for t in range(T)}
        specs["membrane"] = _Spec("Initial-state statistics per timestep (mean over layers)", "t", cols, rows)
        layer_rows = {}
        for layer in sorted(set(v) | set(h), key=extract.natural_key):
            vs, hs = v.get(layer, {}), h.get(layer, {})
            layer_rows[layer] = [
                m.get(names.membrane_w1_avg(layer, "v_prev"), math.nan),
                m.get(names.membrane_w1_avg(layer, "h_tilde"), math.nan),
                max(vs.get("dstd", [math.nan]) or [math.nan]),
                max(vs.get("dmean", [math.nan]) or [math.nan]),
            ]
        specs["membrane_layers"] = _Spec("Membrane gaps between consecutive timesteps, per layer", "layer",
                                         [("mean W1 V", "num"), ("mean W1 H~", "num"), ("max |Δσ| V", "num"),
                                          ("max |Δμ| V", "num")], layer_rows)
    energy_keys = [(names.ENERGY_AC, "ACs / sample", "int"), (names.ENERGY_MAC, "MACs / sample", "int"),
                   (names.ENERGY_PJ, "energy (pJ / sample)", "num"),
                   (names.ENERGY_ANN_PJ, "same network as ANN (pJ / sample)", "num"),
                   (names.ENERGY_RATIO, "SNN / ANN energy", "num"), (names.firing(None), "mean firing rate", "num")]
    if any(k in m for k, _, _ in energy_keys):
        specs["energy"] = _Spec("Synaptic operations and energy (0.9 pJ/AC, 4.6 pJ/MAC)", "quantity",
                                [("value", "num")], {label: [m.get(k, math.nan)] for k, label, _ in energy_keys})
    a = extract.alphas(m)
    if a:
        specs["alpha"] = _Spec("MPS α per layer", "layer", [("α", "num")], {k: [x] for k, x in a.items()})
    rel = extract.gradflow_rel(m)
    if rel:
        g = extract.gradflow(m)
        avg = extract.layer_average(g)
        specs["gradient_flow"] = _Spec("Temporal gradient flow: gradient reaching X(t'−d) from the loss at t'", "d",
                                       [("norm (mean over layers)", "num"), ("ratio to d = 0", "num")],
                                       {str(d): [avg[d] if d < len(avg) else math.nan, r] for d, r in enumerate(rel)})
    f = extract.firing(m)
    if f:
        specs["firing"] = _Spec("Firing rate per layer (mean over timesteps)", "layer", [("rate", "num")],
                                {k: [m.get(names.firing(k), math.nan)] for k in f})
    return specs


def tables(runs) -> dict[str, Table]:
    """Tables for ``runs = [(label, metrics), ...]``; with two or more runs each value column is
    repeated per run and followed by Δ = run − first run."""
    specs = [(label, _specs(m)) for label, m in runs]
    order = []
    for _, s in specs:
        order += [k for k in s if k not in order]
    out = {}
    for name in order:
        present = [(label, s[name]) for label, s in specs if name in s]
        base = present[0][1]
        multi = len(runs) > 1
        keys = []
        for _, sp in present:
            keys += [k for k in sp.rows if k not in keys]
        header = [base.key]
        for ci, (col, _) in enumerate(base.columns):
            if multi:
                header += [f"{col} {label}" for label, _ in runs]
                header += [f"Δ {col} ({label}−{runs[0][0]})" for label, _ in runs[1:]]
            else:
                header.append(col)
        rows = []
        by_label = dict(present)
        for key in keys:
            row = [key]
            for ci, (col, kind) in enumerate(base.columns):
                vals = []
                for label, _ in runs:
                    sp = by_label.get(label)
                    vals.append(sp.rows.get(key, [math.nan] * len(base.columns))[ci] if sp else math.nan)
                row += [fmt(v, kind) for v in vals]
                if multi:
                    row += [fmt_delta(v - vals[0], kind) for v in vals[1:]]
            rows.append(row)
        out[name] = Table(base.title, header, rows)
    return out


def to_markdown(table: Table) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = [f"**{table.title}**", "", "| " + " | ".join(esc(h) for h in table.header) + " |",
             "|" + "|".join("---" for _ in table.header) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines) + "\n"
