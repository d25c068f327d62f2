"""PNG figures of the diagnostics, for one run or several side by side.

Every function takes ``runs = [(label, metrics), ...]`` (one entry for a single run, two for
``chorus report --vs``) and returns PNG bytes, or None when the metrics hold nothing to draw. They use
matplotlib's Agg canvas directly (no pyplot, no global backend switch). Figures answer the paper's
claims: per-timestep accuracy (Table 1), μ/σ of the initial states per timestep (Figure 1), α, the
temporal gradient flow with MPS on vs off, firing rates and synaptic operations (energy).
"""
from __future__ import annotations

import io
import math

import numpy as np

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from chorus.diagnostics import extract

STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D")


def _figure(w: float, h: float, rows: int = 1, cols: int = 1, *, top_in: float = 0.35, bottom_in: float = 0.55,
            left: float = 0.08, right: float = 0.98, wspace: float = 0.25, hspace: float = 0.45):
    """A figure with a fixed grid of axes and fixed margins (in inches at top and bottom): a layout
    engine would cost more than drawing the figure, and diagnostics run inside training."""
    fig = Figure(figsize=(w, h))
    axes = fig.subplots(rows, cols, squeeze=False)
    fig.subplots_adjust(left=left, right=right, top=1 - top_in / h, bottom=bottom_in / h, wspace=wspace,
                        hspace=hspace)
    return fig, axes


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    for ax in fig.axes:
        if ax.get_xlabel() and ax.get_xlabel()[0] in "tdk" or ax.get_xlabel() in ("epoch",):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=72)
    return buf.getvalue()


def _colors(n: int):
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(i / max(n - 1, 1) * 0.9) for i in range(n)]


def _runs_label(label: str, layer: str, multi: bool) -> str:
    return f"{label}: {layer}" if multi else layer


def accuracy_png(runs) -> bytes | None:
    """Accuracy of the output at step t alone, and of the mean of the first k outputs."""
    data = [(label, *extract.accuracy(m)) for label, m in runs]
    if not any(step or first for _, step, first in data):
        return None
    fig, axes = _figure(9, 3.4, 1, 2, wspace=0.08)
    ax1, ax2 = axes[0]
    ax2.sharey(ax1)
    for i, (label, step, first) in enumerate(data):
        ax1.plot(range(1, len(step) + 1), [100 * v for v in step], STYLES[i % 4], marker=MARKERS[i % 4], label=label)
        ax2.plot(range(1, len(first) + 1), [100 * v for v in first], STYLES[i % 4], marker=MARKERS[i % 4], label=label)
    ax1.set(title="output at timestep t alone", xlabel="t", ylabel="accuracy (%)")
    ax2.set(title="mean of the first k outputs (anytime)", xlabel="k")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def membrane_stats_png(runs) -> bytes | None:
    """μ and σ of V(t−1) and of H~(t) per timestep, one line per layer (line style per run)."""
    data = [(label, extract.membrane(m, "v_prev"), extract.membrane(m, "h_tilde")) for label, m in runs]
    if not any(v or h for _, v, h in data):
        return None
    multi = len(runs) > 1
    n_lines = sum(len(v) for _, v, _ in data)
    rows = -(-n_lines // (2 if multi else 4))
    fig, axes = _figure(10, 6.5, 2, 2, bottom_in=0.55 + 0.17 * rows, left=0.07, wspace=0.2, hspace=0.35)
    panels = [(0, "mean", "μ of V(t−1)"), (0, "std", "σ of V(t−1)"),
              (1, "mean", "μ of H~(t)"), (1, "std", "σ of H~(t)")]
    for i, (label, v_stats, h_stats) in enumerate(data):
        for ax, (src, stat, title) in zip(axes.flat, panels):
            stats = (v_stats, h_stats)[src]
            for color, (layer, s) in zip(_colors(len(stats)), stats.items()):
                ys = s.get(stat, [])
                ax.plot(range(1, len(ys) + 1), ys, STYLES[i % 4], color=color, marker=".",
                        label=_runs_label(label, layer, multi))
            ax.set(title=title, xlabel="timestep t")
            ax.grid(alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles and len(handles) <= 16:
        fig.legend(handles, labels, loc="lower center", ncol=2 if multi else 4, fontsize=7)
    return _png(fig)


def membrane_gap_png(runs) -> bytes | None:
    """Layer-averaged gaps between consecutive timesteps: |Δμ|, |Δσ| and W1, for V(t−1) and H~(t)."""
    data = [(label, extract.membrane(m, "v_prev"), extract.membrane(m, "h_tilde")) for label, m in runs]
    if not any(v or h for _, v, h in data):
        return None
    fig, axes = _figure(10, 3.2, 1, 3, left=0.06)
    axes = axes[0]
    for i, (label, v_stats, h_stats) in enumerate(data):
        for ax, stat in zip(axes, ("dmean", "dstd", "w1")):
            for kind, stats in (("V(t−1)", v_stats), ("H~(t)", h_stats)):
                ys = extract.layer_average({k: s.get(stat, []) for k, s in stats.items()})
                ax.plot(range(1, len(ys) + 1), ys, STYLES[i % 4], marker=MARKERS[0 if kind[0] == "V" else 1],
                        label=f"{label}: {kind}")
            ax.set(title={"dmean": "|Δμ|", "dstd": "|Δσ|", "w1": "Wasserstein-1"}[stat] + " between t and t+1",
                   xlabel="t (gap t → t+1)")
            ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper right")
    return _png(fig)


def membrane_hist_png(samples: dict[str, dict[str, "object"]], bins: int = 60) -> bytes | None:
    """Histograms of V(t−1) and H~(t) per timestep for chosen layers: ``samples[layer][kind]`` is ``[T, n]``."""
    if not samples:
        return None
    layers = list(samples)
    fig, axes = _figure(10, 2.7 * len(layers), len(layers), 2, left=0.07, hspace=0.5, wspace=0.2)
    for row, layer in enumerate(layers):
        for col, (kind, title) in enumerate((("v_prev", "V(t−1)"), ("h_tilde", "H~(t)"))):
            ax = axes[row][col]
            vals = samples[layer].get(kind)
            if vals is None:
                continue
            T = vals.shape[0]
            lo, hi = float(vals.min()), float(vals.max())
            if not hi > lo:
                lo, hi = lo - 0.5, hi + 0.5
            edges = np.linspace(lo, hi, bins + 1)
            for t, color in zip(range(T), _colors(T)):
                counts, _ = np.histogram(vals[t].numpy(), bins=edges, density=True)
                ax.stairs(np.where(counts > 0, counts, np.nan), edges, color=color, label=f"t={t + 1}")
            ax.set(title=f"{layer}: {title}", xlabel="potential", ylabel="density")
            ax.set_yscale("log")
            ax.minorticks_off()  # minor ticks of log axes cost more than the plot
            ax.legend(fontsize=7, loc="upper right")
    return _png(fig)


def _grouped_bars(data, title: str, ylabel: str, ylim=None, log: bool = False) -> Figure:
    """One group of bars per layer, one bar per run: ``data = [(label, {layer: value})]`` (non-empty).

    Layers are in natural order; run i's bar of layer j is at x = j + i·w with w = 0.8 / len(data); a
    layer a run lacks is a NaN (no bar).
    """
    layers = sorted({layer for _, v in data for layer in v}, key=extract.natural_key)
    fig, axes = _figure(max(5, 0.5 * len(layers) + 3), 3.4, bottom_in=1.3, left=0.12)
    ax = axes[0][0]
    width = 0.8 / len(data)
    for i, (label, v) in enumerate(data):
        ax.bar([j + i * width for j in range(len(layers))], [v.get(layer, math.nan) for layer in layers], width,
               label=label)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(layers))], layers, rotation=60, ha="right", fontsize=7)
    ax.set(ylabel=ylabel, title=title)
    if ylim is not None:
        ax.set_ylim(*ylim)
    if log:
        ax.set_yscale("log")
        ax.minorticks_off()  # minor ticks of log axes cost more than the plot
    ax.legend(fontsize=8, loc="upper right")
    return fig


def alpha_png(runs) -> bytes | None:
    """The final α of every MPS layer (bars; one group per run)."""
    data = [(label, a) for label, a in ((label, extract.alphas(m)) for label, m in runs) if a]
    if not data:
        return None
    return _png(_grouped_bars(data, "MPS smoothing coefficient α per layer", "α", ylim=(0, 1)))


def alpha_trajectory_png(histories) -> bytes | None:
    """α per layer over training: ``histories = [(label, {layer: [(epoch, α), ...]})]``."""
    histories = [(label, h) for label, h in histories if h]
    if not histories:
        return None
    fig, axes = _figure(9, 3.6, right=0.68)
    ax = axes[0][0]
    multi = len(histories) > 1
    for i, (label, h) in enumerate(histories):
        layers = sorted(h, key=extract.natural_key)
        for color, layer in zip(_colors(len(layers)), layers):
            pts = sorted(h[layer])
            ax.plot([p[0] for p in pts], [p[1] for p in pts], STYLES[i % 4], color=color,
                    label=_runs_label(label, layer, multi))
    ax.set(xlabel="epoch", ylabel="α", title="α trajectories")
    ax.grid(alpha=0.3)
    if len(ax.get_lines()) <= 16:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return _png(fig)


def gradflow_png(runs) -> bytes | None:
    """Per-sample ‖∂ℓ_t'/∂X(t'−d)‖ against d per layer, and ``gradflow/rel_d``: its ratio to the direct
    gradient ‖∂ℓ_t'/∂X(t')‖ at the same t', averaged over t' and then over layers (geometric mean)."""
    data = [(label, extract.gradflow(m), extract.gradflow_rel(m)) for label, m in runs]
    if not any(g for _, g, _ in data):
        return None
    fig, axes = _figure(10, 3.6, 1, 2)
    ax1, ax2 = axes[0]
    multi = len(runs) > 1
    for i, (label, g, rel) in enumerate(data):
        for color, (layer, ys) in zip(_colors(len(g)), g.items()):
            ax1.plot(range(len(ys)), ys, STYLES[i % 4], color=color, marker=".", label=_runs_label(label, layer, multi))
        ax2.plot(range(len(rel)), rel, STYLES[i % 4], marker=MARKERS[i % 4], label=label)
    ax1.set(xlabel="distance to the loss d (timesteps)", ylabel="per-sample gradient norm",
            title="‖∂ℓ(t')/∂X(t'−d)‖ per layer")
    ax2.set(xlabel="d", ylabel="ratio", title="ratio to the direct gradient (per t'; geo. mean over layers)")
    ax1.set_yscale("log")
    ax1.minorticks_off()  # minor ticks of log axes cost more than the plot
    ax2.set_ylim(bottom=0)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    if len(ax1.get_lines()) <= 16:
        ax1.legend(fontsize=6, loc="lower left")
    ax2.legend(fontsize=8, loc="lower left")
    return _png(fig)


def firing_png(runs) -> bytes | None:
    """Firing rate per layer and timestep."""
    data = [(label, extract.firing(m)) for label, m in runs]
    if not any(f for _, f in data):
        return None
    fig, axes = _figure(9, 3.8, right=0.68)
    ax = axes[0][0]
    multi = len(runs) > 1
    for i, (label, f) in enumerate(data):
        for color, (layer, ys) in zip(_colors(len(f)), f.items()):
            ax.plot(range(1, len(ys) + 1), ys, STYLES[i % 4], color=color, marker=".",
                    label=_runs_label(label, layer, multi))
    ax.set(xlabel="timestep t", ylabel="spikes per neuron per step", title="firing rate")
    ax.grid(alpha=0.3)
    if len(ax.get_lines()) <= 16:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return _png(fig)


def sop_png(runs) -> bytes | None:
    """Synaptic operations per sample of every synaptic layer (first layer: MACs; others: ACs)."""
    data = [(label, v) for label, v in ((label, extract.sops(m)) for label, m in runs) if v]
    if not data:
        return None
    return _png(_grouped_bars(data, "synaptic operations per layer", "operations per sample", log=True))


# The figures logged at every diagnostics epoch (the list; the report draws all of ALL_FIGURES).
EPOCH_FIGURES = ("accuracy.png", "membrane_stats.png", "gradient_flow.png", "firing_rates.png")


def all_pngs(runs, only: tuple[str, ...] | None = None) -> dict[str, bytes]:
    """Every metric-based figure that has data, by file name (``only``: just these names)."""
    makers = {
        "accuracy.png": accuracy_png,
        "membrane_stats.png": membrane_stats_png,
        "membrane_gaps.png": membrane_gap_png,
        "alpha.png": alpha_png,
        "gradient_flow.png": gradflow_png,
        "firing_rates.png": firing_png,
        "synaptic_ops.png": sop_png,
    }
    out = {}
    for name, fn in makers.items():
        if only is not None and name not in only:
            continue
        png = fn(runs)
        if png:
            out[name] = png
    return out
