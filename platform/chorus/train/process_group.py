"""The process group's end: destroyed at exit while the interpreter is still whole.

A launched run (``accelerate launch``, ``torchrun``, DeepSpeed) joins a process group that Accelerate
creates and never destroys unless asked (``Accelerator.end_training``). A process that exits with a
live gloo group may die in interpreter finalization: gloo's C++ worker threads still hold work
objects, and tearing them down aborts the process ("terminate called without an active exception",
SIGABRT, exit -6) after a run that finished well -- the launcher then reports a failed job (seen once
in the ZeRO-3 test on a Zen3 host; pytorch/pytorch#190489). ``chorus.train.run`` cannot destroy the
group when it returns: the caller may still need it (gathering ZeRO-3 parameters, another run in the
same process). So the first launched run registers :func:`end_at_exit`, which ``atexit`` calls after
the caller's code and before finalization; a group the caller destroyed already is left alone.
"""
from __future__ import annotations

import atexit

_registered = False


def end_at_exit() -> None:
    """Destroy the default process group if it is still there (every rank calls it at its own exit)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def register() -> None:
    """Make this process destroy its process group at exit (once, however many runs it makes)."""
    global _registered
    if not _registered:
        atexit.register(end_at_exit)
        _registered = True
