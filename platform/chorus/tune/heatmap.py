"""The heatmap of the search metric over two searched keys (by default γ × α_init).

Each cell is the mean over the trials with those two values of each trial's best metric; cells
without a trial are blank. Drawn with matplotlib's Agg backend (no display needed).
"""
from __future__ import annotations

from typing import Optional


def grid(rows: list[dict], x: str, y: str, value: str) -> Optional[tuple[list, list, list[list]]]:
    """``(xs, ys, cells)`` with ``cells[i][j]`` the mean of ``value`` at ``y = ys[i], x = xs[j]``
    (None when no trial has a value there), or None when the rows lack ``x`` or ``y``."""
    if not rows or any(x not in r or y not in r for r in rows):
        return None
    xs = sorted({r[x] for r in rows}, key=_order)
    ys = sorted({r[y] for r in rows}, key=_order)
    cells: list[list] = []
    for yv in ys:
        line = []
        for xv in xs:
            vals = [r[value] for r in rows if r[x] == xv and r[y] == yv and r.get(value) is not None]
            line.append(sum(vals) / len(vals) if vals else None)
        cells.append(line)
    return xs, ys, cells


def _order(v):
    return (0, float(v), "") if isinstance(v, (int, float)) else (1, 0.0, str(v))


def format_grid(xs: list, ys: list, cells: list[list], x: str, y: str) -> str:
    """The heatmap as text: rows ``y``, columns ``x``."""
    head = f"{y} \\ {x}"
    width = max(8, *(len(str(v)) for v in xs))
    left = max(len(head), *(len(str(v)) for v in ys))
    lines = [head.ljust(left) + "  " + "  ".join(str(v).rjust(width) for v in xs)]
    for yv, line in zip(ys, cells):
        lines.append(str(yv).ljust(left) + "  " + "  ".join(
            ("-" if c is None else f"{c:.4f}").rjust(width) for c in line))
    return "\n".join(lines)


def plot(xs: list, ys: list, cells: list[list], x: str, y: str, title: str, path: str) -> str:
    """Write the heatmap PNG to ``path`` and return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    data = np.array([[np.nan if c is None else c for c in line] for line in cells], dtype=float)
    fig, ax = plt.subplots(figsize=(1.2 * len(xs) + 2.5, 0.9 * len(ys) + 1.8))
    im = ax.imshow(np.ma.masked_invalid(data), cmap="viridis", origin="lower", aspect="auto")
    ax.set_xticks(range(len(xs)), [str(v) for v in xs])
    ax.set_yticks(range(len(ys)), [str(v) for v in ys])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title)
    finite = data[np.isfinite(data)]
    mid = float(finite.mean()) if finite.size else 0.0
    for i in range(len(ys)):
        for j in range(len(xs)):
            if np.isfinite(data[i, j]):
                ax.text(j, i, f"{data[i, j]:.3f}", ha="center", va="center",
                        color="black" if data[i, j] > mid else "white", fontsize=9)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
