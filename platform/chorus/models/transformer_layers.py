"""Pieces shared by the spiking Transformers (Spikformer, Spike-driven Transformer).

Tokens travel as ``[T, B, N, C]`` (N tokens of C channels). The papers' 1×1 convolutions over tokens
are per-token linear maps, so they are :class:`LinearBN` here: a linear layer and a BatchNorm over
channels on the folded ``[T·B·N, C]`` tensor (the same statistics as BatchNorm1d on ``[T·B, C, N]``,
and the same parameter count as Conv1d/Conv2d 1×1 + BN).

:class:`SpikingPatchStem` is the spiking patch splitting (SPS) stem of Spikformer (Zhou et al., ICLR
2023): four conv–BN–LIF stages of widths dim/8, dim/4, dim/2, dim, max-pooling (3×3/2) after the last
log2(patch_size) of them, and a conv–BN–LIF relative position embedding added to its input. With
``membrane_shortcut=True`` it is the Spike-driven Transformer's variant (Yao et al., NeurIPS 2023): the
last stage stays a membrane value, and the embedding is conv–BN of its spikes added to it.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from chorus.models.layers import run_lif
from chorus.models.neuron_config import NeuronConfig


class LinearBN(nn.Module):
    """``x[..., fin]`` → BN(Linear(x)) ``[..., fout]``, the batch being every leading dimension."""

    def __init__(self, fin: int, fout: int, bias: bool = False):
        super().__init__()
        self.fc = nn.Linear(fin, fout, bias=bias)
        self.bn = nn.BatchNorm1d(fout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.fc(x.reshape(-1, x.shape[-1])))
        return y.view(*x.shape[:-1], y.shape[-1])


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``[T, B, N, C]`` → ``[T, B, heads, N, C/heads]``."""
    T, B, N, C = x.shape
    return x.view(T, B, N, heads, C // heads).transpose(2, 3)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``[T, B, heads, N, d]`` → ``[T, B, N, heads·d]``."""
    T, B, H, N, d = x.shape
    return x.transpose(2, 3).reshape(T, B, N, H * d)


def check_dims(dim: int, heads: int, mlp_ratio: float, depth: int, patch_size: int) -> int:
    """Validate the Transformer sizes; return the number of pooling stages of the stem."""
    for name, value in (("dim", dim), ("heads", heads), ("depth", depth), ("patch_size", patch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive integer")
    if dim % heads:
        raise ValueError(f"dim={dim} must be divisible by heads={heads}")
    if dim % 8:
        raise ValueError(f"dim={dim} must be divisible by 8 (the stem widths are dim/8, dim/4, dim/2, dim)")
    if not (isinstance(mlp_ratio, (int, float)) and mlp_ratio > 0):
        raise ValueError(f"mlp_ratio={mlp_ratio!r} must be a positive number")
    pools = int(round(math.log2(patch_size)))
    if 2 ** pools != patch_size or pools > 4:
        raise ValueError(f"patch_size={patch_size} must be one of 1, 2, 4, 8, 16 (max-pooling by 2 in the stem)")
    return pools


def check_patch_grid(in_shape: tuple[int, ...], patch_size: int) -> None:
    """Raise unless H and W of ``in_shape`` (C, H, W) are multiples of ``patch_size``: the stem's
    max-pools (kernel 3, stride 2, padding 1) would otherwise round the token grid up silently."""
    _, h, w = in_shape
    if h % patch_size or w % patch_size:
        raise ValueError(f"in_shape={tuple(in_shape)!r}: H={h} and W={w} must be divisible by "
                         f"patch_size={patch_size} (the stem cuts the image into patch_size×patch_size tokens)")


class SpikingPatchStem(nn.Module):
    """SPS stem: ``[T, B, C, H, W]`` → tokens ``[T, B, N, dim]`` (see the module docstring)."""

    def __init__(self, cin: int, dim: int, patch_size: int, neuron: NeuronConfig,
                 membrane_shortcut: bool = False, channels_last: bool = True):
        super().__init__()
        n_pools = check_dims(dim, 1, 1, 1, patch_size)
        widths = (dim // 8, dim // 4, dim // 2, dim)
        self.membrane_shortcut, self.channels_last = membrane_shortcut, channels_last
        self.convs = nn.ModuleList()
        self.lifs = nn.ModuleList()
        self.pools = nn.ModuleList()
        c = cin
        for i, w in enumerate(widths):
            self.convs.append(nn.Sequential(nn.Conv2d(c, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w)))
            self.lifs.append(neuron.make())
            self.pools.append(nn.MaxPool2d(3, 2, 1) if i >= 4 - n_pools else nn.Identity())
            c = w
        self.rpe = nn.Sequential(nn.Conv2d(dim, dim, 3, 1, 1, bias=False), nn.BatchNorm2d(dim))
        # SDT: the last stage's LIF fires on the stem's membrane output, before the embedding conv.
        self.rpe_lif = None if membrane_shortcut else neuron.make()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[0]
        y = x.flatten(0, 1)
        if self.channels_last:
            y = y.contiguous(memory_format=torch.channels_last)
        last = len(self.convs) - 1
        for i, (conv, lif, pool) in enumerate(zip(self.convs, self.lifs, self.pools)):
            y = conv(y)
            if self.membrane_shortcut and i == last:
                y = pool(y)  # SDT: the last stage stays a membrane value
            else:
                y = pool(run_lif(lif, y, T))
        if self.membrane_shortcut:
            y = y + self.rpe(run_lif(self.lifs[last], y, T))
        else:
            y = y + run_lif(self.rpe_lif, self.rpe(y), T)
        return y.flatten(2).transpose(1, 2).contiguous().unflatten(0, (T, -1))
