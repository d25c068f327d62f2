"""The results of a search: one row per trial, the CSV table, the printed table and the best trial.

A row holds the trial id, its final status (``completed``; ``stopped`` early by the scheduler;
``failed``), the epochs it reported, its searched values, the metric at its last epoch and at its best
epoch, and its wall time.
"""
from __future__ import annotations

import csv
import math
from typing import Any, Iterable, Optional

from chorus.config.search import SearchRecipe
from chorus.tune.space import trial_values


def _finite(x: Any) -> Optional[float]:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def trial_rows(spec: SearchRecipe, results: Iterable, epochs: int) -> list[dict]:
    """Rows from a Ray ``ResultGrid`` (each ``Result``: ``config``, ``metrics``, ``metrics_dataframe``,
    ``error``). ``epochs`` is the trials' ``train.epochs``."""
    rows = []
    for r in results:
        metrics = r.metrics or {}
        config = r.config or {}
        history = []
        df = r.metrics_dataframe
        if df is not None and spec.metric in df.columns:
            history = [v for v in (_finite(x) for x in df[spec.metric].tolist()) if v is not None]
        reported = int(metrics.get("training_iteration") or 0)
        if r.error is not None:
            status = "failed"
        elif reported < epochs and spec.scheduler.type == "asha":
            status = "stopped"
        else:
            status = "completed"
        pick = max if spec.mode == "max" else min
        # The trial folder is named after the trial id (a PBT clone's metrics may carry its donor's id).
        row = {"trial_id": _trial_id_from_path(r.path) if r.path else metrics.get("trial_id"),
               "status": status, "epochs": reported}
        row.update(trial_values(spec, config))
        row[f"{spec.metric} (last)"] = history[-1] if history else None
        row[f"{spec.metric} (best)"] = pick(history) if history else None
        row["time_s"] = round(float(metrics.get("time_total_s") or 0.0), 1)
        row["error"] = (type(r.error).__name__ + ": " + str(r.error).strip().splitlines()[-1][:120]
                        if r.error is not None and str(r.error).strip() else
                        (type(r.error).__name__ if r.error is not None else ""))
        rows.append(row)
    rows.sort(key=lambda row: str(row["trial_id"]))
    return rows


def _trial_id_from_path(path: Optional[str]) -> str:
    return (path or "?").rstrip("/").rsplit("/", 1)[-1]


def best_row(spec: SearchRecipe, rows: list[dict]) -> Optional[dict]:
    """The trial with the best metric over its epochs (ties: the one with more epochs)."""
    key = f"{spec.metric} (best)"
    scored = [r for r in rows if r.get(key) is not None]
    if not scored:
        return None
    sign = 1.0 if spec.mode == "max" else -1.0
    return max(scored, key=lambda r: (sign * r[key], r["epochs"]))


def write_csv(rows: list[dict], path: str) -> None:
    """The results table as CSV (columns in first-seen order)."""
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: "" if row.get(c) is None else row[c] for c in columns})


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_table(rows: list[dict], columns: Optional[list[str]] = None) -> str:
    """A fixed-width text table of ``rows`` (the ``error`` column is left out)."""
    if not rows:
        return "(no trials)"
    if columns is None:
        columns = []
        for row in rows:
            columns += [c for c in row if c not in columns and c != "error"]
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)
