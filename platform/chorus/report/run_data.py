"""What a report knows about one run, whatever it was read from (an MLflow run or a checkpoint)."""
from __future__ import annotations

from dataclasses import dataclass, field


class ReportError(ValueError):
    """A report cannot be made; the message names the run, checkpoint or file at fault."""


@dataclass
class RunData:
    """One run as the report sees it.

    ``metrics``: the latest value of every metric (the diagnostics of the last diagnostics epoch, the
    final validation/test results). ``histories``: name → ``[(epoch, value)]`` for the metrics plotted
    over training (α, validation accuracy, training loss). ``figures``: PNGs logged by the diagnostics
    at ``diag_epoch`` (the membrane histograms cannot be redrawn from metrics). ``params``: the
    flattened recipe (``neuron.mps``, ``loss.gamma``, ...). ``early_exit``: the early-exit curve
    (:mod:`chorus.report.early_exit`), when the run has one.
    """

    ref: str
    source: str                      # "mlflow run <id> at <uri>" or "checkpoint <path>"
    name: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    histories: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    figures: dict[str, bytes] = field(default_factory=dict)
    diag_epoch: int | None = None
    label: str = ""
    early_exit: dict | None = None   # chorus.train.early_exit's result (threshold, point, curve), if any

    def variant(self) -> str:
        """"vanilla", "MPS", "TASG" or "MPS+TASG" from the recipe parameters."""
        mps = str(self.params.get("neuron.mps", "")).lower() == "true"
        try:
            gamma = float(self.params.get("loss.gamma", 0) or 0)
        except ValueError:
            gamma = 0.0
        parts = (["MPS"] if mps else []) + (["TASG"] if gamma > 0 else [])
        return "+".join(parts) or "vanilla"


def assign_labels(runs: list[RunData]) -> None:
    """Short, distinct labels: the run name and its variant, made unique with the source if needed."""
    for r in runs:
        r.label = r.name if r.name == r.variant() else f"{r.name} ({r.variant()})"
    if len({r.label for r in runs}) < len(runs):
        for i, r in enumerate(runs):
            r.label = f"{r.label} #{i + 1}"
