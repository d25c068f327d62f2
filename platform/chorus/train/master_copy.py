"""The fp32 value of a parameter as the optimizer holds it (docs/method.md, "The spiking core": α = sigmoid(β)).

Under DeepSpeed bf16/fp16 the module's β is a half-precision copy, refreshed from the optimizer's fp32
master copy after every step: α read from it moves in steps of half-precision resolution, while the
training itself accumulates β in fp32. :func:`master_values` reads the master copy
(``deepspeed.utils.safe_get_full_fp32_param``; under ZeRO it is assembled from the ranks' partitions, a
collective: every rank calls it together). Outside DeepSpeed, or where DeepSpeed keeps no master
mapping, it is the parameter itself (gathered under ZeRO-3, :func:`chorus.train.zero3.gathered`).
"""
from __future__ import annotations

import torch

from chorus.train.zero3 import gathered


def master_values(params: list, acc=None) -> list[torch.Tensor]:
    """fp32 copies of ``params``' values: DeepSpeed's master copy where it has one, else the values."""
    from chorus.train.setup import uses_deepspeed

    if acc is None or not params or not uses_deepspeed(acc):
        return [p.detach().float().clone() for p in params]
    from deepspeed.utils import safe_get_full_fp32_param

    out = [safe_get_full_fp32_param(p) for p in params]
    if all(v is not None for v in out):
        return [v.detach().float().cpu().clone() for v in out]
    with gathered(list(params), acc):
        return [p.detach().float().cpu().clone() for p in params]
