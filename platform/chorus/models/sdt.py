"""Spike-driven Transformer (Yao et al., NeurIPS 2023), with spike-driven self-attention (SDSA).

Membrane shortcuts: every residual joins membrane values, and each sub-block starts with a LIF, so all
matrix products take spikes. On tokens ``[T, B, N, dim]``:

- SDSA: ``S = LIF(x)``; Q, K, V = LIF(BN(linear(S))); ``KV = LIF_attn(Σ_tokens K ⊙ V)`` per head
  (threshold ``attn_v_threshold``, 0.5 as in the paper); ``out = BN(linear(Q ⊙ KV)) + x``.
- MLP: ``BN(linear(LIF(BN(linear(LIF(x)))))) + x``.
- Head: LIF of the token mean, then a linear readout per timestep.

The stem is the SPS with the membrane shortcut (:class:`~chorus.models.transformer_layers.SpikingPatchStem`).
``sdt_2_256`` is the paper's CIFAR10-DVS / DVS128 Gesture configuration (2 blocks, dim 256, 16 heads,
MLP ratio 4) with the official 16×16 token grid: patch 8 at 128×128 (DVS128 Gesture, T = 16; pooling
"0111" in BICLab/Spike-Driven-Transformer's conf/gesture) and patch 4 at 64×64 (CIFAR10-DVS; pooling
"0011" in its conf/cifar10-dvs), i.e. ``patch_size = H // 16`` unless given;
``sdt_8_384`` the ImageNet one (8 blocks, dim 384, 8 heads).
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


class SpikeDrivenSelfAttention(nn.Module):
    """SDSA with the membrane shortcut, on tokens ``[T, B, N, C]``."""

    def __init__(self, dim: int, heads: int, neuron: NeuronConfig, attn_v_threshold: float = 0.5):
        super().__init__()
        self.heads = heads
        self.shortcut_lif = neuron.make()
        self.q, self.k, self.v = LinearBN(dim, dim), LinearBN(dim, dim), LinearBN(dim, dim)
        self.q_lif, self.k_lif, self.v_lif = neuron.make(), neuron.make(), neuron.make()
        self.attn_lif = neuron.make(v_threshold=attn_v_threshold)
        self.proj = LinearBN(dim, dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.shortcut_lif(x)
        q = split_heads(self.q_lif(self.q(s)), self.heads)
        k = split_heads(self.k_lif(self.k(s)), self.heads)
        v = split_heads(self.v_lif(self.v(s)), self.heads)
        kv = self.attn_lif((k * v).sum(dim=-2, keepdim=True))
        return self.proj(merge_heads(q * kv)) + x


class MembraneMLP(nn.Module):
    def __init__(self, dim: int, hidden: int, neuron: NeuronConfig):
        super().__init__()
        self.lif1, self.fc1 = neuron.make(), LinearBN(dim, hidden, bias=True)
        self.lif2, self.fc2 = neuron.make(), LinearBN(hidden, dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.lif2(self.fc1(self.lif1(x)))) + x


class SDTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, neuron: NeuronConfig, attn_v_threshold: float):
        super().__init__()
        self.attn = SpikeDrivenSelfAttention(dim, heads, neuron, attn_v_threshold)
        self.mlp = MembraneMLP(dim, int(dim * mlp_ratio), neuron)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.attn(x))


class SpikeDrivenTransformer(SpikingModel):
    """Spike-driven Transformer over ``[T, B, C, H, W]`` → logits ``[T, B, num_classes]``."""

    def __init__(self, num_classes: int, in_shape: tuple[int, int, int], neuron: NeuronConfig, depth: int = 2,
                 dim: int = 256, heads: int = 16, mlp_ratio: float = 4.0, patch_size: int = 16,
                 attn_v_threshold: float = 0.5, channels_last: bool = True):
        super().__init__()
        check_dims(dim, heads, mlp_ratio, depth, patch_size)
        check_patch_grid(in_shape, patch_size)
        self.in_shape = tuple(in_shape)
        self.stem = SpikingPatchStem(in_shape[0], dim, patch_size, neuron, membrane_shortcut=True,
                                     channels_last=channels_last)
        self.blocks = nn.Sequential(*[SDTBlock(dim, heads, mlp_ratio, neuron, attn_v_threshold)
                                      for _ in range(depth)])
        self.head_lif = neuron.make()
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(type(self).__name__, x, self.in_shape)
        return self.head(self.head_lif(self.blocks(self.stem(x)).mean(2)))


@register("sdt", "image", 16,
          "Spike-driven Transformer with depth/dim/heads/mlp_ratio/patch_size keywords (default 2-256)")
def sdt(num_classes, in_shape, neuron, depth=2, dim=256, heads=16, mlp_ratio=4.0, patch_size=16,
        attn_v_threshold=0.5, channels_last=True):
    return SpikeDrivenTransformer(num_classes, in_shape, neuron, depth, dim, heads, mlp_ratio, patch_size,
                                  attn_v_threshold, channels_last)


@register("sdt_2_256", "image", 16,
          "Spike-driven Transformer 2-256 of the paper for CIFAR10-DVS / DVS128 Gesture (16x16 tokens)")
def sdt_2_256(num_classes, in_shape, neuron, attn_v_threshold=0.5, channels_last=True, patch_size=None):
    if patch_size is None:
        patch_size = max(1, int(in_shape[1]) // 16)  # 16x16 tokens: 8 at 128x128, 4 at 64x64 (official configs)
    return SpikeDrivenTransformer(num_classes, in_shape, neuron, depth=2, dim=256, heads=16, mlp_ratio=4.0,
                                  patch_size=patch_size, attn_v_threshold=attn_v_threshold,
                                  channels_last=channels_last)


@register("sdt_8_384", "image", 4, "Spike-driven Transformer 8-384 of the paper for ImageNet (224x224)")
def sdt_8_384(num_classes, in_shape, neuron, attn_v_threshold=0.5, channels_last=True):
    return SpikeDrivenTransformer(num_classes, in_shape, neuron, depth=8, dim=384, heads=8, mlp_ratio=4.0,
                                  patch_size=16, attn_v_threshold=attn_v_threshold,
                                  channels_last=channels_last)
