"""DeepSpeed ZeRO-3 in evaluation, diagnostics and α reads: every rank runs the same forwards.

Under ZeRO-3 each parameter above ``stage3_param_persistence_threshold`` lives in pieces, one per rank,
and a module's forward first all-gathers its pieces: a collective. A forward on one rank alone (rank-0
diagnostics, a rank that skips an empty batch or has fewer evaluation batches than another) waits for
the other ranks forever. So, when :func:`is_zero3`:

- :func:`lockstep` pads a rank's batch stream: a rank whose stream ended (or whose batch is empty)
  while another rank still has one forwards a padding batch of the other rank's shape, zeros, and
  discards the result; the loop ends when every rank's stream has ended;
- :func:`gathered` gathers parameters for a read outside forward (α = sigmoid(β), docs/method.md
  "The spiking core"); elsewhere it does nothing.

Nothing here changes a result: padding batches never reach a metric, and evaluation runs in eval mode
(no BatchNorm statistic moves).
"""
from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

import torch


def is_zero3(acc) -> bool:
    """True when ``acc`` trains through DeepSpeed ZeRO stage 3 with more than one process."""
    if acc is None or acc.num_processes < 2:
        return False
    plugin = getattr(acc.state, "deepspeed_plugin", None)
    return bool(plugin is not None and int(plugin.zero_stage or 0) == 3)


def _spec(batch) -> tuple | None:
    """What a padding batch needs to look like ``batch`` (None: no batch, or an empty one)."""
    if batch is None:
        return None
    x, y = batch
    if y.numel() == 0:
        return None
    return tuple(x.shape), str(x.dtype).split(".")[-1], tuple(y.shape), str(y.dtype).split(".")[-1]


def _padding(spec: tuple):
    xs, xd, ys, yd = spec
    return torch.zeros(xs, dtype=getattr(torch, xd)), torch.zeros(ys, dtype=getattr(torch, yd))


def lockstep(batches: Iterable, acc) -> Iterator[tuple]:
    """``(x, y, real)`` for every batch of ``batches``; under ZeRO-3 also ``(x, y, False)`` padding
    batches, so that every rank yields equally often. Per batch one all-gather of two ints per rank;
    the shapes travel (an object all-gather) only for a batch where some rank has to pad."""
    if not is_zero3(acc):
        for x, y in batches:
            yield x, y, y.numel() > 0
        return
    import torch.distributed as dist

    it = iter(batches)
    while True:
        batch = next(it, None)
        mine = _spec(batch)
        # one small tensor all-gather per batch: [has a batch, has a non-empty one] of every rank
        flags = torch.tensor([[batch is not None, mine is not None]], dtype=torch.int32, device=acc.device)
        every = [torch.zeros_like(flags) for _ in range(acc.num_processes)]
        dist.all_gather(every, flags)
        every = torch.cat(every).cpu()
        if not bool(every[:, 0].any()):
            return
        if mine is not None:
            if not bool(every[:, 1].all()):        # someone pads: it needs this shape
                dist.all_gather_object([None] * acc.num_processes, mine)
            yield batch[0], batch[1], True
            continue
        if not bool(every[:, 1].any()):            # every rank's batch is empty: nothing to forward
            continue
        specs: list = [None] * acc.num_processes
        dist.all_gather_object(specs, None)         # the shapes, only when a rank has to pad
        x, y = _padding(next(s for s in specs if s is not None))
        yield x, y, False


@contextlib.contextmanager
def gathered(params: list, acc) -> Iterator[None]:
    """The full values of ``params`` inside the block (read-only) under ZeRO-3; elsewhere a no-op.
    Every rank must enter it together."""
    if not is_zero3(acc) or not params:
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
        yield
