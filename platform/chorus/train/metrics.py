"""The per-timestep evaluation metrics of the ensemble view (docs/method.md, "Recipes and runs"; the
paper's per-timestep table).

For logits ``[T, B, C]``: ensemble accuracy (argmax of the mean over all T outputs), the accuracy of
each timestep's output alone (``acc_step_t``) and the anytime accuracy of the first k outputs averaged
(``acc_first_k``, k = 1..T). Counts are kept as one tensor so that processes sum them in one reduce.
"""
from __future__ import annotations

import torch


class TimestepAccuracy:
    """Accumulates correct counts; layout ``[total, loss_sum, ensemble, step_1..T, first_1..T]``."""

    def __init__(self, T: int):
        self.T = T
        self.counts = torch.zeros(3 + 2 * T, dtype=torch.float64)

    def update(self, logits: torch.Tensor, target: torch.Tensor, loss: torch.Tensor | None = None) -> None:
        logits = logits.detach().float().cpu()
        target = target.detach().cpu()
        T, B = logits.shape[:2]
        if T != self.T:
            raise ValueError(f"logits have T={T}, the metric was made for T={self.T}")
        if B == 0:
            return
        c = self.counts
        c[0] += B
        if loss is not None:
            c[1] += float(loss) * B
        c[2] += (logits.mean(0).argmax(-1) == target).sum()
        c[3:3 + T] += (logits.argmax(-1) == target.unsqueeze(0)).sum(1)
        first = logits.cumsum(0) / torch.arange(1, T + 1).view(T, 1, 1)
        c[3 + T:3 + 2 * T] += (first.argmax(-1) == target.unsqueeze(0)).sum(1)

    def reduce(self, accelerator) -> None:
        """Sum the counts over processes (every process must call it)."""
        if accelerator is not None and accelerator.num_processes > 1:
            t = self.counts.to(device=accelerator.device, dtype=torch.float64)
            self.counts = accelerator.reduce(t, reduction="sum").cpu()

    def result(self) -> dict[str, float]:
        c, T = self.counts, self.T
        n = max(float(c[0]), 1.0)
        out = {"acc": float(c[2]) / n, "loss": float(c[1]) / n, "samples": float(c[0])}
        for t in range(T):
            out[f"acc_step_{t + 1}"] = float(c[3 + t]) / n
            out[f"acc_first_{t + 1}"] = float(c[3 + T + t]) / n
        return out


def prefixed(result: dict[str, float], prefix: str) -> dict[str, float]:
    """``{"acc": ..}`` → ``{"val/acc": ..}`` (docs/method.md metric names)."""
    return {f"{prefix}/{k}": v for k, v in result.items()}


def timestep_table(result: dict[str, float], title: str = "") -> str:
    """The per-timestep accuracy table (Markdown) of one evaluation result."""
    T = sum(1 for k in result if k.startswith("acc_step_"))
    head = "| k / t | " + " | ".join(str(t) for t in range(1, T + 1)) + " |"
    rule = "|---|" + "---|" * T
    step = "| acc of step t alone | " + " | ".join(f"{100 * result[f'acc_step_{t}']:.2f}" for t in range(1, T + 1)) + " |"
    first = "| acc of first k (anytime) | " + " | ".join(
        f"{100 * result[f'acc_first_{k}']:.2f}" for k in range(1, T + 1)) + " |"
    lines = [f"**{title}**" if title else "", head, rule, step, first,
             f"\nensemble accuracy (mean of all {T} outputs): {100 * result['acc']:.2f}% "
             f"on {int(result['samples'])} samples"]
    return "\n".join(line for line in lines if line != "")


DIAGNOSTICS_PREFIXES = ("diag/", "membrane/", "firing/", "sop/", "energy/", "gradflow/", "grad/")


def epoch_metric_names(recipe) -> tuple[set[str], tuple[str, ...]]:
    """What the loop reports at every epoch's end (``hooks.on_epoch_end``) for ``recipe``: exact names,
    and prefixes followed by a layer or diagnostics name (α of MPS layers; diagnostics when they run
    every epoch). ``chorus tune`` checks its ``metric`` against these before Ray starts."""
    T = recipe.data.T
    names = {"epoch", "val/acc", "val/loss"} | {f"val/acc_{kind}_{t}" for kind in ("step", "first")
                                                for t in range(1, T + 1)}
    prefixes = ("mps/alpha/",) if recipe.neuron.mps else ()
    if recipe.diagnostics.every == 1:
        prefixes += DIAGNOSTICS_PREFIXES
    return names, prefixes
