"""Early-exit inference: stop each sample once its running ensemble is confident (docs/method.md,
"Recipes and runs").

For per-timestep logits o_1..o_T of one sample, the running ensemble after t steps is the mean of
o_1..o_t (the ``acc_first_t`` prediction). With threshold P the sample stops at the first t whose running
ensemble has softmax maximum ≥ P, or at T, and is predicted by that running ensemble. P ≥ 1 never stops
early (a float softmax can round to exactly 1.0; "confidence 1" is read as "run every step"), so it gives
the full-T ensemble accuracy. The energy of a sample that stops at t is that of its first t timesteps
(:mod:`chorus.train.step_energy`).

``chorus eval RUN --exit confidence=P`` reports P's point and a curve over :data:`THRESHOLDS`; in Python,
:func:`evaluate_early_exit` on a checkpoint, or :func:`exit_steps` / :func:`exit_curve` on saved logits.
"""
from __future__ import annotations

import json
import os

import torch

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
RESULT_FILE = "early_exit.json"


def parse_exit_spec(text: str) -> float:
    """``confidence=P`` (0 < P ≤ 1) → P; anything else is a ValueError naming ``--exit`` and the value."""
    key, sep, value = str(text).partition("=")
    if key.strip() != "confidence" or not sep:
        raise ValueError(f"--exit {text!r}: expected confidence=P with 0 < P <= 1 (e.g. confidence=0.9)")
    try:
        p = float(value)
    except ValueError:
        raise ValueError(f"--exit {text!r}: {value!r} is not a number") from None
    if not 0.0 < p <= 1.0:
        raise ValueError(f"--exit {text!r}: the confidence threshold must lie in (0, 1], got {p}")
    return p


def running_confidence(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For logits ``[T, N, C]``: ``(confidence [T, N], prediction [T, N])`` of the running ensemble."""
    lf = logits.double()
    T = lf.shape[0]
    running = lf.cumsum(0) / torch.arange(1, T + 1, dtype=lf.dtype).view(T, 1, 1)
    conf, pred = running.softmax(-1).max(-1)
    return conf, pred


def exit_steps(logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """The step (1..T) at which each sample stops: ``[N]`` int64."""
    conf, _ = running_confidence(logits)
    T = conf.shape[0]
    hit = conf >= threshold if threshold < 1.0 else torch.zeros_like(conf, dtype=torch.bool)
    hit[T - 1] = True
    return hit.to(torch.int64).argmax(0) + 1


def exit_point(logits: torch.Tensor, labels: torch.Tensor, threshold: float,
               step_energy: torch.Tensor | None = None) -> dict:
    """Accuracy, mean steps and (with ``step_energy`` ``[T, N]`` pJ) the energy of threshold ``threshold``."""
    steps = exit_steps(logits, threshold)
    _, pred = running_confidence(logits)
    chosen = pred.gather(0, (steps - 1).view(1, -1))[0]
    T, N = logits.shape[:2]
    point = {"threshold": float(threshold), "acc": float((chosen == labels.view(-1)).double().mean()) if N else 0.0,
             "mean_timesteps": float(steps.double().mean()) if N else 0.0, "timesteps": T, "samples": N}
    if step_energy is not None and N:
        cum = step_energy.double().cumsum(0)
        used = cum.gather(0, (steps - 1).view(1, -1))[0].sum()
        full = cum[-1].sum()
        point.update(energy_pj=float(used / N), energy_full_pj=float(full / N),
                     energy_saved=float(1 - used / full) if full > 0 else 0.0)
    return point


def exit_curve(logits: torch.Tensor, labels: torch.Tensor, thresholds=THRESHOLDS,
               step_energy: torch.Tensor | None = None) -> list[dict]:
    """:func:`exit_point` for every threshold, in increasing order."""
    return [exit_point(logits, labels, p, step_energy) for p in sorted(set(map(float, thresholds)))]


def curve_table(curve: list[dict], chosen: float | None = None, title: str = "") -> str:
    """The curve as a Markdown table; the row of ``chosen`` is marked."""
    energy = all("energy_saved" in p for p in curve)
    head = "| confidence | accuracy | mean timesteps |" + (" energy / sample | energy saved |" if energy else "")
    rule = "|---|---|---|" + ("---|---|" if energy else "")
    lines = [f"**{title}**" if title else "", head, rule]
    for p in curve:
        mark = " ←" if chosen is not None and abs(p["threshold"] - chosen) < 1e-12 else ""
        row = f"| {p['threshold']:g}{mark} | {100 * p['acc']:.2f}% | {p['mean_timesteps']:.2f} of {p['timesteps']} |"
        if energy:
            row += f" {p['energy_pj'] / 1e6:.3f} µJ | {100 * p['energy_saved']:.1f}% |"
        lines.append(row)
    return "\n".join(line for line in lines if line)


def run_folder_of(checkpoint: str) -> str | None:
    """The run folder holding ``checkpoint`` (``RUN/checkpoints/step_*``), if it is one."""
    parent = os.path.dirname(os.path.abspath(checkpoint))
    if os.path.basename(parent) == "checkpoints":
        return os.path.dirname(parent)
    return None


def evaluate_early_exit(path: str, threshold: float = 0.9, thresholds=THRESHOLDS, save: bool = True, **kw) -> dict:
    """:func:`chorus.train.eval_checkpoint.evaluate_checkpoint` of ``path`` (keywords ``kw``), plus
    ``early_exit`` (threshold, its point, the curve) and ``early_exit_table``. With ``save``, the
    ``early_exit`` entry is also written to ``RUN/early_exit.json`` when the checkpoint is in a run
    folder (``chorus report RUN`` shows it)."""
    from chorus.train.eval_checkpoint import evaluate_checkpoint
    from chorus.train.step_energy import StepEnergy

    probe = StepEnergy()
    result = evaluate_checkpoint(path, keep_logits=True, probe=probe, **kw)
    logits, labels = result.pop("logits"), result.pop("labels")
    energy = probe.energy()
    curve = exit_curve(logits, labels, (*thresholds, threshold), energy)
    point = next(p for p in curve if abs(p["threshold"] - threshold) < 1e-12)
    info = {"threshold": threshold, "point": point, "curve": curve, "split": result["split"],
            "checkpoint": result["checkpoint"], "time_mode": result["time_mode"]}
    result["early_exit"] = info
    result["early_exit_table"] = curve_table(curve, threshold, f"early exit on {result['split']}: stop at the first "
                                             f"step whose running ensemble has softmax max ≥ the confidence")
    folder = run_folder_of(result["checkpoint"]) if save else None
    if folder is not None:
        tmp = os.path.join(folder, RESULT_FILE + ".tmp")
        with open(tmp, "w") as f:
            json.dump(info, f, indent=1)
        os.replace(tmp, os.path.join(folder, RESULT_FILE))
        result["early_exit_file"] = os.path.join(folder, RESULT_FILE)
    return result
