"""SIGTERM and SIGINT (Ctrl+C) as a request to stop at the next safe point (docs/architecture.md,
"Training": interruption).

Slurm and Kubernetes send SIGTERM some seconds before they kill; a user presses Ctrl+C. Either way the
run should end as a resumable run, not as a dead one: :class:`StopSignals` records the signal (the
handler does nothing else), the loop reads the record once per optimizer step together with the step's
statistics -- one reduce over processes, so every rank learns of a signal that reached any rank at the
same step -- and after that step writes a checkpoint and raises :class:`Interrupted`. The MLflow run
ends KILLED; ``chorus train`` prints one line with the command that resumes and exits 128 + the
signal's number (130 for SIGINT, 143 for SIGTERM).

A second Ctrl+C while the run is finishing its step stops at once (the default handler is back after
the first signal). Handlers are only installed on the main thread (a run inside a Ray trial thread
keeps its caller's handling).
"""
from __future__ import annotations

import signal
import threading
from typing import Optional

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """The run stopped on a signal at a safe point; ``checkpoint`` resumes it."""

    def __init__(self, signum: int, step: int, checkpoint: Optional[str], run_dir: str, main: bool = True):
        self.signum, self.step, self.checkpoint, self.run_dir, self.main = signum, step, checkpoint, run_dir, main
        super().__init__(f"stopped by {signal.Signals(signum).name} after step {step}; "
                         f"resumable checkpoint: {checkpoint}")

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum)

    def __reduce__(self):
        return (Interrupted, (self.signum, self.step, self.checkpoint, self.run_dir, self.main))


class StopSignals:
    """Context manager: while inside, SIGINT and SIGTERM are recorded (``received``), not acted on."""

    def __init__(self):
        self.received: int = 0
        self._old: dict = {}

    def _handle(self, signum, frame) -> None:
        self.received = self.received or signum
        signal.signal(signum, self._old.get(signum, signal.SIG_DFL))   # a second one acts at once

    def flags(self) -> tuple[float, float]:
        """``(sigint, sigterm)`` as 0/1, for the step's reduce over processes."""
        return float(self.received == signal.SIGINT), float(self.received == signal.SIGTERM)

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old.clear()


def agreed(sigint: float, sigterm: float) -> int:
    """The signal every process acts on, from the flags summed over processes (SIGINT wins: a person)."""
    if sigint > 0:
        return int(signal.SIGINT)
    if sigterm > 0:
        return int(signal.SIGTERM)
    return 0


def agree(acc, stop: StopSignals) -> int:
    """Outside a step (after an epoch's end): the flags of every process in one reduce."""
    import torch

    flags = torch.tensor(stop.flags(), dtype=torch.float64, device=acc.device)
    if acc.num_processes > 1:
        flags = acc.reduce(flags, reduction="sum")
    return agreed(*flags.tolist())
