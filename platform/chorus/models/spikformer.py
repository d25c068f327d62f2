"""Spikformer (Zhou et al., "Spikformer: When Spiking Neural Network Meets Transformer", ICLR 2023).

SPS stem (:class:`~chorus.models.transformer_layers.SpikingPatchStem`), then ``depth`` blocks of
``x + SSA(x)`` and ``x + MLP(x)`` on tokens ``[T, B, N, dim]``, the mean over tokens and a linear
readout per timestep.

Spiking self-attention (SSA) has no softmax: Q, K, V are spikes (linear–BN–LIF), and
``SSA = LIF_attn(Q Kᵀ V · s)`` with the scale s of the official code (``scale``: 0.125 in its
CIFAR and ImageNet models, 0.25 in its CIFAR10-DVS / DVS128 Gesture model), then linear–BN–LIF.
Q, K and V are binary, so Q (Kᵀ V) is computed instead of (Q Kᵀ) V (linear in the number of tokens)
with identical integer sums. The attention neuron keeps its own threshold (``attn_v_threshold``, 0.5
as in the paper); every other setting comes from the model's ``neuron`` config.

Published configurations: ``spikformer_2_256`` (CIFAR10-DVS / DVS128 Gesture: 2 blocks, dim 256,
16 heads, MLP ratio 4, patch 16, attention scale 0.25, 2×128×128 input at T = 16; 2.57M parameters
in the paper's Table 3) and ``spikformer_4_384`` (CIFAR-10: 4 blocks, dim 384, 12 heads, patch 4, attention
scale 0.125, 3×32×32 at T = 4; 9.32M). The scales are ``self.scale`` of ZK-Zhou/spikformer's
``cifar10dvs/model.py`` (0.25) and ``cifar10/model.py`` / ``imagenet/model.py`` (0.125).
"""
from __future__ import annotations

import torch
from torch import nn

from chorus.models.introspect import SpikingModel
from chorus.models.layers import check_input
from chorus.models.neuron_config import NeuronConfig
from chorus.models.registry import register
from chorus.models.transformer_layers import (LinearBN, SpikingPatchStem, check_dims, check_patch_grid, merge_heads,
                                             split_heads)


class SpikingSelfAttention(nn.Module):
    """SSA on tokens ``[T, B, N, C]`` → spikes ``[T, B, N, C]``."""

    def __init__(self, dim: int, heads: int, neuron: NeuronConfig, attn_v_threshold: float = 0.5,
                 scale: float = 0.125):
        super().__init__()
        self.heads, self.scale = heads, scale
        self.q, self.k, self.v = LinearBN(dim, dim), LinearBN(dim, dim), LinearBN(dim, dim)
        self.q_lif, self.k_lif, self.v_lif = neuron.make(), neuron.make(), neuron.make()
        self.attn_lif = neuron.make(v_threshold=attn_v_threshold)
        self.proj = LinearBN(dim, dim, bias=True)
        self.proj_lif = neuron.make()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = split_heads(self.q_lif(self.q(x)), self.heads)
        k = split_heads(self.k_lif(self.k(x)), self.heads)
        v = split_heads(self.v_lif(self.v(x)), self.heads)
        attn = q @ (k.transpose(-2, -1) @ v) * self.scale
        return self.proj_lif(self.proj(merge_heads(self.attn_lif(attn))))


class SpikingMLP(nn.Module):
    """linear–BN–LIF → linear–BN–LIF on tokens."""

    def __init__(self, dim: int, hidden: int, neuron: NeuronConfig):
        super().__init__()
        self.fc1, self.lif1 = LinearBN(dim, hidden, bias=True), neuron.make()
        self.fc2, self.lif2 = LinearBN(hidden, dim, bias=True), neuron.make()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lif2(self.fc2(self.lif1(self.fc1(x))))


class SpikformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, neuron: NeuronConfig, attn_v_threshold: float,
                 scale: float = 0.125):
        super().__init__()
        self.attn = SpikingSelfAttention(dim, heads, neuron, attn_v_threshold, scale)
        self.mlp = SpikingMLP(dim, int(dim * mlp_ratio), neuron)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class Spikformer(SpikingModel):
    """Spikformer over ``[T, B, C, H, W]`` → logits ``[T, B, num_classes]``."""

    def __init__(self, num_classes: int, in_shape: tuple[int, int, int], neuron: NeuronConfig, depth: int = 2,
                 dim: int = 256, heads: int = 16, mlp_ratio: float = 4.0, patch_size: int = 16,
                 attn_v_threshold: float = 0.5, channels_last: bool = True, scale: float = 0.125):
        super().__init__()
        check_dims(dim, heads, mlp_ratio, depth, patch_size)
        check_patch_grid(in_shape, patch_size)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
            raise ValueError(f"scale={scale!r} must be a positive number (the SSA attention scale)")
        self.in_shape = tuple(in_shape)
        self.stem = SpikingPatchStem(in_shape[0], dim, patch_size, neuron, channels_last=channels_last)
        self.blocks = nn.Sequential(*[SpikformerBlock(dim, heads, mlp_ratio, neuron, attn_v_threshold, float(scale))
                                      for _ in range(depth)])
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(type(self).__name__, x, self.in_shape)
        return self.head(self.blocks(self.stem(x)).mean(2))


@register("spikformer", "image", 16,
          "Spikformer with depth/dim/heads/mlp_ratio/patch_size/scale keywords (default 2-256, scale 0.125)")
def spikformer(num_classes, in_shape, neuron, depth=2, dim=256, heads=16, mlp_ratio=4.0, patch_size=16,
               attn_v_threshold=0.5, channels_last=True, scale=0.125):
    return Spikformer(num_classes, in_shape, neuron, depth, dim, heads, mlp_ratio, patch_size, attn_v_threshold,
                      channels_last, scale)


@register("spikformer_2_256", "image", 16, "Spikformer-2-256 of the paper for CIFAR10-DVS / DVS128 Gesture (128x128)")
def spikformer_2_256(num_classes, in_shape, neuron, attn_v_threshold=0.5, channels_last=True):
    return Spikformer(num_classes, in_shape, neuron, depth=2, dim=256, heads=16, mlp_ratio=4.0, patch_size=16,
                      attn_v_threshold=attn_v_threshold, channels_last=channels_last, scale=0.25)


@register("spikformer_4_384", "image", 4, "Spikformer-4-384 of the paper for CIFAR-10 (32x32, patch 4)")
def spikformer_4_384(num_classes, in_shape, neuron, attn_v_threshold=0.5, channels_last=True):
    return Spikformer(num_classes, in_shape, neuron, depth=4, dim=384, heads=12, mlp_ratio=4.0, patch_size=4,
                      attn_v_threshold=attn_v_threshold, channels_last=channels_last, scale=0.125)
