"""Synthetic finished run folders for the study tables (no training): the three files
:func:`chorus.study.tables.run_results` reads, with numbers the tests choose, laid out as a study folder
``{arm}/seed_{seed}/``."""
import json
import os


def write_run(folder, acc: dict, alpha: dict | None = None, diag: list[dict] | None = None, split: str = "test"):
    """One run folder: ``per_timestep.json`` = ``acc``, ``summary.json`` naming ``split``, ``metrics.jsonl``
    with one α record and then the ``diag`` records (each gets ``diag/acc`` so that it is a diagnostics
    record, as the loop logs them)."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "per_timestep.json"), "w") as f:
        json.dump(acc, f)
    with open(os.path.join(folder, "summary.json"), "w") as f:
        json.dump({split: {"acc": acc["acc"]}, "wall_seconds": {"total": 1.0}}, f)
    with open(os.path.join(folder, "metrics.jsonl"), "w") as f:
        f.write(json.dumps({"step": 1, "train/loss": 1.0, **{f"mps/alpha/{k}": v for k, v in (alpha or {}).items()}})
                + "\n")
        for i, rec in enumerate(diag or []):
            f.write(json.dumps({"step": 10 * (i + 1), "epoch": float(i + 1), "diag/acc": acc["acc"], **rec}) + "\n")
    return str(folder)


def accs(ens: float, steps: list[float]) -> dict:
    """A per_timestep.json: the ensemble, each timestep alone, and first-k equal to the running mean of
    the per-step numbers (any numbers do for the tables)."""
    out = {"acc": ens, "loss": 0.5, "samples": 100}
    for t, v in enumerate(steps, 1):
        out[f"acc_step_{t}"] = v
        out[f"acc_first_{t}"] = sum(steps[:t]) / t
    return out


def study_folder(root, table: dict[str, list[dict]]) -> dict:
    """``{arm: [run kwargs per seed]}`` → run folders under ``root``; returns ``{(arm, seed): run_dir}``."""
    runs = {}
    for arm, per_seed in table.items():
        for seed, kwargs in enumerate(per_seed):
            runs[(arm, seed)] = write_run(os.path.join(root, arm, f"seed_{seed}"), **kwargs)
    return runs
