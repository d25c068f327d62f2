"""PNG figures of a study for ``study.html`` (issue 16.2: "per-timestep curves per arm", α per layer), drawn
from ``study.json``'s content alone: accuracy of each timestep alone and of the first k timesteps per arm
(mean over seeds, error bars ± the sample std), and the final MPS α per layer per arm (mean ± std).
matplotlib's Agg canvas directly, no pyplot and no global backend switch (as :mod:`chorus.diagnostics.figures`).
Each function returns PNG bytes, or None when the study holds nothing to draw.
"""
from __future__ import annotations

import io
import re

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()


def _series(metrics: dict, kind: str) -> tuple[list[int], list[float], list[float]]:
    """Timesteps t (or k) and the mean and std (0 where undefined) in % of ``acc_{kind}_{t}``."""
    rows = sorted((int(m.group(1)), s) for key, s in metrics.items()
                  if (m := re.fullmatch(rf"acc_{kind}_(\d+)", key)) and s["n"])
    return ([t for t, _ in rows], [100 * s["mean"] for _, s in rows],
            [100 * (s["std"] or 0.0) for _, s in rows])


def per_timestep(study: dict) -> bytes | None:
    """Two panels: accuracy of each timestep alone, and of the mean of the first k outputs, per arm."""
    arms = study["arms"]
    if not any(_series(a["metrics"], "step")[0] for a in arms.values()):
        return None
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    for ax, kind, title, xlabel in ((axes[0], "step", "each timestep alone", "t"),
                                    (axes[1], "first", "ensemble of the first k timesteps", "k")):
        for i, (arm, a) in enumerate(arms.items()):
            x, mean, std = _series(a["metrics"], kind)
            if x:
                ax.errorbar(x, mean, yerr=std, marker=MARKERS[i % len(MARKERS)], capsize=3,
                            label=f"{arm} (n={len(a['seeds'])})")
        ax.set_title(f"{study['split']} accuracy, {title}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy (%), mean ± std over seeds")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def alpha(study: dict) -> bytes | None:
    """Grouped bars: the MPS α of each layer at the end, one bar per arm with MPS (mean ± std)."""
    arms = {arm: a["alpha"] for arm, a in study["arms"].items() if a.get("alpha")}
    if not arms:
        return None
    layers = sorted({layer for al in arms.values() for layer in al})
    width = 0.8 / len(arms)
    fig = Figure(figsize=(max(6, 1.2 * len(layers) + 2), 4))
    ax = fig.subplots()
    for i, (arm, al) in enumerate(arms.items()):
        xs = [j + (i - (len(arms) - 1) / 2) * width for j, layer in enumerate(layers) if layer in al]
        cells = [al[layer] for layer in layers if layer in al]
        ax.bar(xs, [c["mean"] for c in cells], width, yerr=[c["std"] or 0.0 for c in cells], capsize=3,
               label=f"{arm} (n={cells[0]['n'] if cells else 0})")
    ax.set_xticks(range(len(layers)), layers, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("α at the end, mean ± std over seeds")
    ax.set_ylim(0, 1)
    ax.set_title("MPS α per layer")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)
