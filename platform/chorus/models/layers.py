"""Building blocks shared by the model zoo: time folded into the batch, one reshape per block.

docs/method.md, "The spiking core": tensors are time-first ``[T, B, ...]``; layers without time dynamics
(conv, BN, linear, pooling) fold time into the batch and see ``[T·B, ...]``. A block here folds once
(a view), runs all its stateless layers, and unfolds once (a view) before its ``LIF``.

Images may travel in the channels-last layout (``[T·B, H, W, C]`` in memory), which is what the CPU
convolution kernels prefer. :func:`run_lif` hands the ``LIF`` such a tensor as the contiguous
``[T, B, H, W, C]`` it really is, so no copy is made on the way in or out: the neuron is elementwise
per neuron, so the order of neurons in memory does not change its result.
"""
from __future__ import annotations

import torch
from torch import nn

from chorus.models.neuron_config import NeuronConfig
from chorus.neurons import LIF


def run_lif(lif: LIF, y: torch.Tensor, T: int) -> torch.Tensor:
    """Apply ``lif`` to the folded ``y`` (``[T·B, ...]``) and return the spikes folded the same way."""
    if y.dim() == 4 and not y.is_contiguous() and y.is_contiguous(memory_format=torch.channels_last):
        z = y.permute(0, 2, 3, 1)  # the contiguous [T·B, H, W, C] behind the channels-last view
        s = lif(z.unflatten(0, (T, -1))).flatten(0, 1)
        return s.permute(0, 3, 1, 2)
    return lif(y.unflatten(0, (T, -1))).flatten(0, 1)


class ConvBNLIF(nn.Module):
    """conv → BN (folded time) → LIF → optional pooling, on ``[T, B, C, H, W]``."""

    def __init__(self, cin: int, cout: int, neuron: NeuronConfig, kernel: int = 3, stride: int = 1,
                 padding: int | None = None, pool: nn.Module | None = None):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2 if padding is None else padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.lif = neuron.make()
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[0]
        s = run_lif(self.lif, self.bn(self.conv(x.flatten(0, 1))), T)
        if self.pool is not None:
            s = self.pool(s)
        return s.unflatten(0, (T, -1))


class LinearBNLIF(nn.Module):
    """Linear → BN1d (folded time) → LIF on ``[T, B, F]`` (BN optional)."""

    def __init__(self, fin: int, fout: int, neuron: NeuronConfig, bn: bool = True):
        super().__init__()
        self.fc = nn.Linear(fin, fout, bias=not bn)
        self.bn = nn.BatchNorm1d(fout) if bn else nn.Identity()
        self.lif = neuron.make()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[0]
        return self.lif(self.bn(self.fc(x.flatten(0, 1))).unflatten(0, (T, -1)))


class Readout(nn.Module):
    """The classifier head: flatten and a linear layer per timestep → logits ``[T, B, classes]``.

    The per-timestep logits are the members of the temporal ensemble (docs/method.md, introduction).
    """

    def __init__(self, fin: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f"dropout={dropout!r} must be a number in [0, 1) (the readout's dropout probability)")
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(fin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[0]
        return self.fc(self.dropout(x.flatten(0, 1).flatten(1))).unflatten(0, (T, -1))


def check_input(model_name: str, x: torch.Tensor, in_shape: tuple[int, ...]) -> None:
    """Raise a ``ValueError`` naming the expected layout when ``x`` is not ``[T, B, *in_shape]``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{model_name} input must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2 + len(in_shape) or tuple(x.shape[2:]) != tuple(in_shape):
        raise ValueError(f"{model_name} expects input [T, B, {', '.join(map(str, in_shape))}] "
                         f"(time-first); got shape {tuple(x.shape)}")
