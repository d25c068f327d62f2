"""Training statistics, typed: what one optimizer step saw (:class:`StepStats`), summed on the device
over its micro-batches and read on the host once per step (:class:`DeviceSums`), and the log window
built from those reads on the host (:class:`Window`: no extra device read at the log interval).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import torch


@dataclass
class StepStats:
    """Sums over the micro-batches of one optimizer step (or of a log window). The losses are
    sample-weighted sums: ``loss / samples`` is the mean."""

    loss: float = 0.0
    loss_ce: float = 0.0
    loss_tasg: float = 0.0
    correct: float = 0.0
    samples: float = 0.0
    nonfinite: float = 0.0        # micro-batches whose loss was NaN or inf
    sigint: float = 0.0           # processes that received SIGINT / SIGTERM (chorus.train.interrupt)
    sigterm: float = 0.0

    def __add__(self, other: "StepStats") -> "StepStats":
        return StepStats(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))


_FIELDS = [f.name for f in dataclasses.fields(StepStats)]
_SIGNAL = slice(_FIELDS.index("sigint"), _FIELDS.index("sigterm") + 1)


class DeviceSums:
    """:class:`StepStats` kept as one float64 device vector in field order: adding a micro-batch is
    device work only; :meth:`read` sums over processes (one reduce) and is the one host read."""

    def __init__(self, device):
        self.values = torch.zeros(len(_FIELDS), dtype=torch.float64, device=device)

    @torch.no_grad()
    def add(self, parts: dict, logits: torch.Tensor, target: torch.Tensor) -> None:
        n = target.shape[0]
        loss = parts["loss"].detach()
        zero = torch.zeros((), device=loss.device)
        stats = {"loss": loss * n, "loss_ce": parts["loss_ce"].detach() * n,
                 "loss_tasg": parts["loss_tasg"].detach() * n,
                 "correct": (logits.detach().float().mean(0).argmax(-1) == target).sum(),
                 "samples": torch.tensor(n, device=loss.device), "nonfinite": (~torch.isfinite(loss)).sum(),
                 "sigint": zero, "sigterm": zero}
        self.values += torch.stack([stats[k].double() for k in _FIELDS])

    def read(self, accelerator, signals: tuple[float, float] = (0.0, 0.0)) -> StepStats:
        """The step's totals over every process, with this process's stop-signal flags (``(sigint,
        sigterm)``) summed in the same reduce; resets the sums."""
        self.values[_SIGNAL] = torch.tensor(signals, dtype=torch.float64).to(self.values.device, non_blocking=True)
        values = accelerator.reduce(self.values, reduction="sum") if accelerator.num_processes > 1 else self.values
        out = StepStats(*values.tolist())
        self.values.zero_()
        return out


@dataclass
class Window:
    """The optimizer steps since the last ``train/*`` log line, and when that window started."""

    stats: StepStats = dataclasses.field(default_factory=StepStats)
    started: float = dataclasses.field(default_factory=time.perf_counter)

    def state(self) -> dict:
        """What a checkpoint keeps of the window: its sums (the time it started is this process's)."""
        return dataclasses.asdict(self.stats)

    @classmethod
    def restored(cls, state: dict | None) -> "Window":
        return cls(StepStats(**{k: v for k, v in (state or {}).items() if k in _FIELDS}))

    def metrics(self, lr: float, epoch_progress: float) -> dict[str, float]:
        """The ``train/*`` metrics of the window (docs/method.md, "Recipes and runs": metric names); starts a new window."""
        s, now = self.stats, time.perf_counter()
        n = max(s.samples, 1.0)
        out = {"train/loss": s.loss / n, "train/loss_ce": s.loss_ce / n, "train/loss_tasg": s.loss_tasg / n,
               "train/acc": s.correct / n, "train/lr": float(lr),
               "train/samples_per_s": s.samples / max(now - self.started, 1e-9), "train/epoch": epoch_progress}
        self.stats, self.started = StepStats(), now
        return out
