"""BatchNorm statistics in fp32 when DeepSpeed trains in bf16/fp16 (issue 13: "keep the neuron's parameter
and statistics in fp32 where that matters").

DeepSpeed's bf16/fp16 casts the model's parameters to half precision; its optimizer keeps an fp32 master
copy of them (so β and the weights accumulate their updates in fp32), but buffers have no master copy.
Cast to bf16, a BatchNorm running variance moves by ``momentum · (batch − running)`` rounded to 8 bits of
mantissa at every step: the statistics that evaluation and checkpoints use would drift by the rounding.
:func:`keep_fp32_statistics` leaves the running mean and variance in fp32 and makes each BatchNorm compute
in fp32 -- input and affine parameters widened, the result cast back to the input's dtype -- the same
arithmetic as :class:`torch.nn.BatchNorm2d` on the widened tensors (``tests/test_train_fp32_norms.py``).
Other floating buffers follow the parameters' dtype as before.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_CLASSES: dict[type, type] = {}


class _Fp32Statistics:
    """Mixed into a BatchNorm class: :meth:`torch.nn.modules.batchnorm._BatchNorm.forward` in fp32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        keep = not self.training or self.track_running_stats
        y = F.batch_norm(x.float(), self.running_mean if keep else None, self.running_var if keep else None,
                         None if self.weight is None else self.weight.float(),
                         None if self.bias is None else self.bias.float(), use_batch, factor, self.eps)
        return y.to(x.dtype)


def _fp32_class(cls: type) -> type:
    if cls not in _CLASSES:
        _CLASSES[cls] = type(f"Fp32Stats{cls.__name__}", (_Fp32Statistics, cls), {"__module__": __name__})
    return _CLASSES[cls]


def keep_fp32_statistics(model: nn.Module, dtype: torch.dtype) -> int:
    """Every BatchNorm of ``model`` keeps fp32 running statistics and computes in fp32 (its class swapped
    for a subclass: ``isinstance`` and ``state_dict`` unchanged); every other floating buffer is cast to
    ``dtype`` (the parameters' dtype under DeepSpeed). Returns the number of BatchNorm layers."""
    # SyncBatchNorm keeps its own forward (its statistics are reduced across ranks; this fp32 forward
    # would silently drop that): its buffers follow ``dtype`` like any other
    norms = [m for m in model.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, nn.SyncBatchNorm)]
    kept = set()
    for m in norms:
        if not isinstance(m, _Fp32Statistics):
            m.__class__ = _fp32_class(type(m))
        for name in ("running_mean", "running_var"):
            b = getattr(m, name)
            if b is not None:
                b.data = b.data.float()
                kept.add(id(b))
    for b in model.buffers():
        if id(b) not in kept and b.is_floating_point() and b.dtype != dtype:
            b.data = b.data.to(dtype)
    return len(norms)
