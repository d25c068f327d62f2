"""The diagnostics of a study (issue 16.2: membrane mean/std gap between timesteps, gradient reaching d steps
back, firing rate, energy): per arm, mean ± sample std over seeds of what each run's **last diagnostics
record** in ``metrics.jsonl`` logs (the last record with a ``diag/...`` key, written by
:mod:`chorus.diagnostics.collect`), under the names it logs them (:mod:`chorus.diagnostics.names`):
``firing/...``, ``energy/...``, ``sop/...``, ``membrane/...``, ``gradflow/...``, ``grad/...``.

All such keys go to ``study.json`` (``arms.{arm}.diagnostics``); the Markdown table shows the
network-level ones (:data:`NETWORK`: ``firing/mean``, ``energy/...``, ``membrane/w1_avg`` and
``membrane/htilde_w1_avg`` (the Wasserstein-1 gap between the membrane distributions of adjacent
timesteps, averaged over t and layers), ``gradflow/rel_{d}``; the ``gradflow/zero_...`` counts only where
some run counted one), one row per key and one column per arm.
"""
from __future__ import annotations

import math
import re

from chorus.study import significance

PREFIXES = ("firing/", "energy/", "sop/", "membrane/", "gradflow/", "grad/")
NETWORK = re.compile(r"firing/mean|energy/[^/]+|membrane/(htilde_)?w1_avg"
                     r"|gradflow/(rel_\d+|zero_direct|zero_layers_\d+)")
ZEROS = "gradflow/zero_"
MARK = "diag/"          # a record holding a diag/... key is a diagnostics record


def last_record(records) -> dict:
    """The last diagnostics record of a run's ``metrics.jsonl`` records, ``{}`` when it has none."""
    last = {}
    for rec in records:
        if any(k.startswith(MARK) for k in rec):
            last = rec
    return last


def pick(record: dict) -> dict:
    """The diagnostics quantities of one record: numeric values of the keys under :data:`PREFIXES`."""
    return {k: float(v) for k, v in record.items()
            if k.startswith(PREFIXES) and isinstance(v, (int, float)) and not isinstance(v, bool)}


def aggregate(per_seed: list[dict], stats) -> dict:
    """``{key: stats(values over the seeds that logged it)}``, keys in a stable order (``stats`` is
    :func:`chorus.study.tables.stats`)."""
    keys = sorted({k for d in per_seed for k in d}, key=_order)
    return {k: stats([d[k] for d in per_seed if k in d]) for k in keys}


def network_level(key: str) -> bool:
    """A key of the whole network, not of one layer (:data:`NETWORK`)."""
    return NETWORK.fullmatch(key) is not None


def _order(key: str) -> tuple:
    prefix = next((i for i, p in enumerate(PREFIXES) if key.startswith(p)), len(PREFIXES))
    return (prefix,) + tuple(int(x) if x.isdigit() else x for x in re.split(r"(\d+)", key))


def _cell(s: dict | None) -> str:
    if not s or not s["n"]:
        return "—"
    sd = "n/a" if s["std"] is None else f"{s['std']:.4g}"
    mark = significance.marker((s.get("vs_reference") or {}).get("p"))
    return f"{s['mean']:.4g} ± {sd}{mark}" if math.isfinite(s["mean"]) else "—"


def markdown(study: dict) -> list[str]:
    """The Markdown lines of the diagnostics table (none when no run logged diagnostics)."""
    arms = study["arms"]
    keys = []
    for a in arms.values():
        keys += [k for k in a.get("diagnostics", {}) if network_level(k) and k not in keys]
    keys = [k for k in keys if not k.startswith(ZEROS)
            or any(v for a in arms.values() for v in a.get("diagnostics", {}).get(k, {}).get("values", []))]
    if not keys:
        return []
    keys.sort(key=_order)
    names = list(arms)
    epochs = {arm: sorted({e for e in arms[arm].get("diagnostics_epoch", []) if e is not None}) for arm in names}
    lines = ["", "Diagnostics of each run's last diagnostics record (mean ± std over seeds; network-level keys as "
             "logged, per-layer keys in study.json; markers: Welch's t-test against the first arm as above):", "",
             "| quantity | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names),
             "| n | " + " | ".join(str(len(arms[a].get("diagnostics_epoch", []))) for a in names) + " |",
             "| epoch | " + " | ".join(", ".join(f"{e:g}" for e in epochs[a]) or "—" for a in names) + " |"]
    for key in keys:
        lines.append(f"| `{key}` | " + " | ".join(_cell(arms[a].get("diagnostics", {}).get(key)) for a in names)
                     + " |")
    return lines
