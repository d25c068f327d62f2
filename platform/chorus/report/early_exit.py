"""The report's early-exit section (docs/method.md, "Recipes and runs"): accuracy against the mean number
of timesteps used, and the energy saved, over confidence thresholds (chorus.train.early_exit).

A run folder's curve is the one ``chorus eval RUN --exit confidence=P`` wrote (``early_exit.json``);
a checkpoint's is measured now on its validation split.
"""
from __future__ import annotations

import json
import os

from chorus.diagnostics import figures as figs
from chorus.diagnostics.tables import Table
from chorus.report.run_data import ReportError, RunData

TEXT = ("Each sample stops at the first timestep whose running ensemble (the mean of its first t outputs) has "
        "softmax maximum ≥ the confidence, and is predicted by that running ensemble; confidence 1 runs every "
        "step (the full-T ensemble). Energy: the synaptic-operation model of the energy section, counted for "
        "the steps each sample ran.")


def read_curve(run_folder: str) -> dict | None:
    """``early_exit.json`` of a run folder, or None when ``chorus eval --exit`` has not written one."""
    from chorus.train.early_exit import RESULT_FILE

    path = os.path.join(run_folder, RESULT_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            info = json.load(f)
        info["curve"] = [dict(p) for p in info["curve"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ReportError(f"{path}: not an early-exit result ({e})") from None
    return info


def measure_curve(checkpoint: str) -> dict:
    """The curve of a checkpoint on its validation split, measured now (nothing written)."""
    from chorus.train.early_exit import evaluate_early_exit

    try:
        return evaluate_early_exit(checkpoint, split="val", save=False)["early_exit"]
    except (ValueError, FileNotFoundError) as e:      # RecipeError and ReportError are ValueErrors
        raise ReportError(f"checkpoint {checkpoint!r}: early exit: {e}") from None


def _table(runs: list[RunData]) -> Table:
    rows = []
    for r in runs:
        for p in r.early_exit["curve"]:
            saved = f"{100 * p['energy_saved']:.1f}%" if "energy_saved" in p else "–"
            rows.append([r.label, f"{p['threshold']:g}", f"{100 * p['acc']:.2f}", f"{p['mean_timesteps']:.2f}",
                         str(p["timesteps"]), saved])
    return Table("Early exit: accuracy against timesteps used",
                 ["run", "confidence", "accuracy (%)", "mean timesteps", "of T", "energy saved"], rows)


def _png(runs: list[RunData]) -> bytes:
    fig, axes = figs._figure(10, 3.4, 1, 2)
    ax1, ax2 = axes[0]
    for i, r in enumerate(runs):
        c = r.early_exit["curve"]
        style = figs.STYLES[i % 4]
        ax1.plot([p["mean_timesteps"] for p in c], [100 * p["acc"] for p in c], style, marker="o", label=r.label)
        if all("energy_saved" in p for p in c):
            ax2.plot([100 * p["energy_saved"] for p in c], [100 * p["acc"] for p in c], style, marker="o",
                     label=r.label)
    ax1.set(xlabel="mean timesteps used", ylabel="accuracy (%)", title="accuracy against timesteps")
    ax2.set(xlabel="energy saved (%)", ylabel="accuracy (%)", title="accuracy against energy saved")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=7)
    return figs._png(fig)


def early_exit_section(runs: list[RunData]):
    """The section, or None when no run has a curve."""
    from chorus.report.sections import Section

    have = [r for r in runs if r.early_exit]
    if not have:
        return None
    splits = sorted({r.early_exit.get("split", "?") for r in have})
    return Section("Early exit", f"{TEXT} Split: {', '.join(splits)}.", [_table(have)],
                   [("accuracy against mean timesteps and energy saved", _png(have))])
