"""What a caller of ``chorus.train.run(recipe, hooks)`` can plug in (``chorus tune`` does):
:class:`TrainHooks`, the protocol, and :class:`Hooks`, its do-nothing implementation to subclass.

- ``on_epoch_end(epoch, metrics, checkpoint_dir)``: after each epoch's checkpoint is complete, with the
  0-based ``epoch``, that epoch's metrics (``val/*``, ``mps/alpha/*``, diagnostics, ``epoch`` = epochs
  done) and the checkpoint folder. Called on the main process, on every process when ``all_ranks`` is
  true (Ray Train's report is a barrier). An exception propagates (the MLflow run ends FAILED).
- ``should_stop()``: read on the main process after ``on_epoch_end`` and broadcast; true ends the run
  cleanly after that epoch.
"""
from __future__ import annotations

from typing import Optional, Protocol, runtime_checkable


@runtime_checkable
class TrainHooks(Protocol):
    all_ranks: bool

    def on_epoch_end(self, epoch: int, metrics: dict, checkpoint_dir: Optional[str]) -> None: ...

    def should_stop(self) -> bool: ...


class Hooks:
    """No-op hooks: subclass and override what you need."""

    all_ranks = False

    def on_epoch_end(self, epoch: int, metrics: dict, checkpoint_dir: Optional[str]) -> None:
        return None

    def should_stop(self) -> bool:
        return False


def as_hooks(hooks) -> TrainHooks:
    """``hooks`` checked against :class:`TrainHooks` once, before anything runs (``None``: :class:`Hooks`)."""
    if hooks is None:
        return Hooks()
    if not isinstance(hooks, TrainHooks):
        missing = [m for m in ("all_ranks", "on_epoch_end", "should_stop") if m not in dir(hooks)]
        raise TypeError(f"hooks {type(hooks).__name__} lacks {', '.join(missing)} of chorus.train.TrainHooks; "
                        f"subclass chorus.train.Hooks for the defaults")
    return hooks
