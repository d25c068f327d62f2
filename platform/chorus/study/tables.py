"""The tables of a study, from the runs' own result files (docs/method.md, "Recipes and runs"): per arm,
mean ± sample standard deviation over seeds (with the number of seeds) of the ensemble accuracy, the
accuracy of each timestep alone and of the first k, α per MPS layer at the end and the diagnostics of the
last diagnostics record (:mod:`chorus.study.diagnostics`), each accuracy and diagnostics cell
of an arm after the first marked by its significance against the first (:mod:`chorus.study.significance`);
written as ``study.json``, ``study.md`` and ``study.html`` (:mod:`chorus.study.report`). Reads only the run
folders (``per_timestep.json``, ``summary.json``, ``metrics.jsonl``), so a study can be aggregated without
MLflow.
"""
from __future__ import annotations

import json
import math
import os
import re
import statistics

from chorus.study import diagnostics, significance

ALPHA = "mps/alpha/"


class ResultsMissing(RuntimeError):
    """A finished run's folder lacks the results the study aggregates (names the file)."""


def run_results(run_dir: str) -> dict:
    """One run's results: ``split`` (test when it was evaluated, else val), ``results`` (its
    ``per_timestep.json``: acc, acc_step_t, acc_first_k, loss, samples), ``alpha`` (the last logged
    ``mps/alpha/{layer}`` of ``metrics.jsonl``), ``diagnostics`` (:func:`chorus.study.diagnostics.pick` of
    its last diagnostics record) and ``diagnostics_epoch``."""
    paths = {n: os.path.join(run_dir, n) for n in ("summary.json", "per_timestep.json", "metrics.jsonl")}
    for name in ("summary.json", "per_timestep.json"):
        if not os.path.isfile(paths[name]):
            raise ResultsMissing(f"{paths[name]} is missing: the run did not finish")
    with open(paths["summary.json"]) as f:
        summary = json.load(f)
    with open(paths["per_timestep.json"]) as f:
        results = json.load(f)
    alpha: dict[str, float] = {}
    records = []
    if os.path.isfile(paths["metrics.jsonl"]):
        with open(paths["metrics.jsonl"]) as f:
            for number, line in enumerate(f, 1):
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ResultsMissing(f"{paths['metrics.jsonl']}, line {number}: not JSON ({e})") from None
                records.append(rec)
                alpha.update({k[len(ALPHA):]: v for k, v in rec.items() if k.startswith(ALPHA)})
    last = diagnostics.last_record(records)
    return {"split": "test" if summary.get("test") else "val", "results": results, "alpha": alpha,
            "diagnostics": diagnostics.pick(last), "diagnostics_epoch": last.get("epoch") if last else None,
            "wall_seconds": (summary.get("wall_seconds") or {}).get("total")}


def stats(values: list[float]) -> dict:
    """``mean``, ``std`` (sample, n − 1; None for one value), ``n`` and the ``values``."""
    n = len(values)
    return {"mean": statistics.fmean(values) if n else math.nan,
            "std": statistics.stdev(values) if n > 1 else None, "n": n, "values": list(values)}


def _order(key: str) -> tuple:
    m = re.fullmatch(r"acc_(step|first)_(\d+)", key)
    return (0, "", 0) if key == "acc" else (1, m.group(1), int(m.group(2))) if m else (2, key, 0)


def aggregate(name: str, arms: list[str], seeds: list[int], runs: dict[tuple[str, int], str],
              split: str = "test") -> dict:
    """``study.json``'s content from the finished runs ``{(arm, seed): run_dir}`` (pairs not in ``runs``
    are counted as missing)."""
    out = {"name": name, "split": split, "seeds": list(seeds), "arms": {}, "missing": []}
    for arm in arms:
        per_seed, alphas = {}, {}
        for seed in seeds:
            if (arm, seed) not in runs:
                out["missing"].append({"arm": arm, "seed": seed})
                continue
            res = run_results(runs[(arm, seed)])
            if res["split"] != split:
                raise ResultsMissing(f"{runs[(arm, seed)]}: has {res['split']} results, the study aggregates {split}")
            per_seed[seed] = res
        keys = sorted({k for r in per_seed.values() for k in r["results"] if k == "acc" or k.startswith("acc_")},
                      key=_order)
        metrics = {k: stats([r["results"][k] for r in per_seed.values() if k in r["results"]]) for k in keys}
        for r in per_seed.values():
            for layer, v in r["alpha"].items():
                alphas.setdefault(layer, []).append(v)
        logged = [r for r in per_seed.values() if r["diagnostics"]]
        out["arms"][arm] = {"seeds": sorted(per_seed), "runs": {str(s): runs[(arm, s)] for s in sorted(per_seed)},
                            "metrics": metrics, "alpha": {k: stats(v) for k, v in alphas.items()},
                            "diagnostics": diagnostics.aggregate([r["diagnostics"] for r in logged], stats),
                            "diagnostics_epoch": [r["diagnostics_epoch"] for r in logged]}
    significance.annotate(out["arms"], "metrics")
    significance.annotate(out["arms"], "diagnostics")
    out["significance"] = {"test": significance.TEST, "reference": arms[0] if arms else None,
                           "markers": {mark: f"p < {level}" for level, mark in significance.LEVELS},
                           "where": "arms.{arm}.metrics|diagnostics.{key}.vs_reference"}
    return out


def _cell(s: dict | None, scale: float = 100.0, digits: int = 2) -> str:
    if not s or not s["n"]:
        return "—"
    sd = "n/a" if s["std"] is None else f"{scale * s['std']:.{digits}f}"
    mark = significance.marker((s.get("vs_reference") or {}).get("p"))
    return f"{scale * s['mean']:.{digits}f} ± {sd}{mark}"


def markdown(study: dict) -> str:
    """``study.md``: the ensemble and per-timestep table, the first-k table, α at the end, diagnostics."""
    arms = study["arms"]
    keys = [k for k in next(iter(arms.values()), {}).get("metrics", {})] if arms else []
    steps = [k for k in keys if k.startswith("acc_step_")]
    firsts = [k for k in keys if k.startswith("acc_first_")]
    lines = [f"# {study['name']}: {study['split']} accuracy (%), mean ± std over seeds", "",
             f"Seeds {study['seeds']}; std is the sample standard deviation (n − 1); n = seeds that finished.", ""]
    head = ["arm", "n", "ensemble"] + [f"t={k.rsplit('_', 1)[1]} alone" for k in steps]
    lines += ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for arm, a in arms.items():
        m = a["metrics"]
        lines.append("| " + " | ".join([arm, str(len(a["seeds"])), _cell(m.get("acc"))]
                                       + [_cell(m.get(k)) for k in steps]) + " |")
    if firsts:
        head = ["arm"] + [f"first {k.rsplit('_', 1)[1]}" for k in firsts]
        lines += ["", "Accuracy of the ensemble of the first k timesteps (%):", "",
                  "| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * len(firsts)) + "|"]
        for arm, a in arms.items():
            lines.append("| " + " | ".join([arm] + [_cell(a["metrics"].get(k)) for k in firsts]) + " |")
    if len(arms) > 1:
        names = list(arms)
        lines += ["", significance.legend(names[0], len(arms[names[0]]["seeds"]),
                                          [len(arms[n]["seeds"]) for n in names[1:]])]
    with_alpha = {arm: a["alpha"] for arm, a in arms.items() if a["alpha"]}
    if with_alpha:
        layers = sorted({layer for al in with_alpha.values() for layer in al})
        lines += ["", "MPS α per layer at the end (mean ± std):", "",
                  "| arm | " + " | ".join(layers) + " |", "|---|" + "---:|" * len(layers)]
        for arm, al in with_alpha.items():
            lines.append("| " + " | ".join([arm] + [_cell(al.get(layer), 1.0, 3) for layer in layers]) + " |")
    lines += diagnostics.markdown(study)
    if study.get("missing"):
        gone = ", ".join(f"{m['arm']}/seed {m['seed']}" for m in study["missing"])
        lines += ["", f"Not finished (left out): {gone}."]
    return "\n".join(lines) + "\n"


def write(study: dict, folder: str) -> tuple[str, str, str]:
    """``study.json``, ``study.md`` and ``study.html`` (the same tables and the figures,
    :mod:`chorus.study.report`) in ``folder``; returns their paths."""
    from chorus.study import report

    js, md, page = (os.path.join(folder, f"study.{ext}") for ext in ("json", "md", "html"))
    text = markdown(study)
    with open(js, "w") as f:
        json.dump(study, f, indent=1)
    with open(md, "w") as f:
        f.write(text)
    with open(page, "w", encoding="utf-8") as f:
        f.write(report.render(study, text))
    return js, md, page
