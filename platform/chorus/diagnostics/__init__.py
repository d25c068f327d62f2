"""Ensemble diagnostics of a spiking network (issue 7; the measurements behind docs/paper.md's claims).

``collect(model, batches, loss_fn=..., layers=...)`` measures, on a fixed list of validation batches:
per-timestep and anytime accuracy (the paper's Table 1), mean/std of the carried potential V(t−1) and
of H~(t) per layer and timestep with the gaps between consecutive timesteps (Figure 1, quantified),
α per MPS layer, the temporal gradient flow, firing rates, synaptic operations and an energy estimate.
Metric names are in :mod:`chorus.diagnostics.names` (MLflow names of docs/method.md).
"""
from chorus.diagnostics import extract, figures, names
from chorus.diagnostics.collect import Diagnostics, collect
from chorus.diagnostics.energy import E_AC_PJ, E_MAC_PJ
from chorus.diagnostics.membrane import wasserstein1
from chorus.diagnostics.tables import Table, tables, to_markdown

__all__ = [
    "collect", "Diagnostics", "names", "extract", "figures", "tables", "to_markdown", "Table",
    "wasserstein1", "E_AC_PJ", "E_MAC_PJ",
]
