"""Spiking PointNet (Ren et al., NeurIPS 2023) for ModelNet10/40: PointNet (Qi et al., CVPR 2017)
classification with LIF neurons in place of ReLU.

Per point: [input T-Net] → 64 → [feature T-Net] → 64 → 128 → 1024 (linear–BN–LIF, the papers' 1×1
convs), max over points, then 512 → 256 (linear–BN–LIF, dropout 0.4 before the second BN) and the
readout. A T-Net(k) is k → 64 → 128 → 1024 → max → 512 → 256 → k·k added to the identity.

Input is one cloud per sample, ``x: [B, N, 3]``; the model feeds the same cloud at every one of
``model.timesteps`` timesteps (settable) and returns ``[T, B, classes]``. Because the input is the
same at every t, each first linear–BN runs once on ``[B·N, 3]`` and only its output is expanded over
time (BatchNorm sees the same statistics as on T identical copies). Spiking PointNet's membrane
perturbation is the neuron config's ``v_init="uniform"``.
"""
from __future__ import annotations

import torch
from torch import nn

from chorus.models.introspect import SpikingModel
from chorus.models.neuron_config import NeuronConfig
from chorus.models.registry import register
from chorus.models.transformer_layers import LinearBN


class PointMLP(nn.Module):
    """A stack of per-point linear–BN–LIF layers on ``[T, B, N, C]``.

    With ``static_input=True`` the first layer takes ``[B, N, C]`` (the same at every timestep), runs
    once, and its output is expanded to ``T`` steps before the first LIF.
    """

    def __init__(self, sizes: tuple[int, ...], neuron: NeuronConfig, real_input: bool = False):
        super().__init__()
        self.fcs = nn.ModuleList(LinearBN(a, b, bias=True) for a, b in zip(sizes[:-1], sizes[1:]))
        self.lifs = nn.ModuleList(neuron.make() for _ in sizes[1:])
        # the first layer multiplies real values (points, or spikes after a T-Net transform): the energy
        # estimate counts its operations as MACs, not spike-driven accumulates (chorus.diagnostics.energy)
        self.fcs[0].fc.dense_input = real_input

    def forward(self, x: torch.Tensor, T: int | None = None) -> torch.Tensor:
        for i, (fc, lif) in enumerate(zip(self.fcs, self.lifs)):
            y = fc(x)
            if i == 0 and T is not None:
                y = y.unsqueeze(0).expand(T, *y.shape)
            x = lif(y)
        return x


class TNet(nn.Module):
    """Predicts a k×k transform per sample and timestep (identity + learned offset)."""

    def __init__(self, k: int, neuron: NeuronConfig, real_input: bool = False):
        super().__init__()
        self.k = k
        self.points = PointMLP((k, 64, 128, 1024), neuron, real_input=real_input)
        self.fc = PointMLP((1024, 512, 256), neuron)
        self.out = nn.Linear(256, k * k)

    def forward(self, x: torch.Tensor, T: int | None = None) -> torch.Tensor:
        g = self.fc(self.points(x, T).amax(dim=-2))  # [T, B, 256]
        eye = torch.eye(self.k, dtype=g.dtype, device=g.device)
        return self.out(g).view(*g.shape[:-1], self.k, self.k) + eye


class SpikingPointNet(SpikingModel):
    """Spiking PointNet classifier: ``[B, N, 3]`` → ``[T, B, num_classes]`` with T = ``self.timesteps``."""

    def __init__(self, num_classes: int, in_shape: tuple[int, int], neuron: NeuronConfig, timesteps: int = 4,
                 input_transform: bool = True, feature_transform: bool = True, dropout: float = 0.4):
        super().__init__()
        self.in_shape = tuple(in_shape)
        self.timesteps = timesteps
        self._check_timesteps()
        self.input_tnet = TNet(3, neuron, real_input=True) if input_transform else None
        self.mlp1 = PointMLP((3, 64, 64), neuron, real_input=True)  # the cloud, or the transformed cloud
        self.feature_tnet = TNet(64, neuron) if feature_transform else None  # fed mlp1's spikes
        self.mlp2 = PointMLP((64, 128, 1024), neuron, real_input=feature_transform)  # spikes @ trans
        self.fc1, self.lif1 = LinearBN(1024, 512, bias=True), neuron.make()
        self.fc2 = nn.Linear(512, 256)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.bn2, self.lif2 = nn.BatchNorm1d(256), neuron.make()
        self.readout = nn.Linear(256, num_classes)

    def _check_timesteps(self) -> int:
        t = self.timesteps
        if isinstance(t, bool) or not isinstance(t, int) or t < 1:
            raise ValueError(f"timesteps={t!r} must be a positive integer")
        return t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != 3:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"SpikingPointNet expects one cloud per sample, x of shape [B, N, 3] "
                             f"(the model repeats it over timesteps={self.timesteps}); got {shape}")
        T = self._check_timesteps()
        if self.input_tnet is not None:
            trans = self.input_tnet(x, T)  # [T, B, 3, 3]
            h = self.mlp1(x.unsqueeze(0) @ trans)  # the transformed cloud differs per timestep
        else:
            h = self.mlp1(x, T)
        if self.feature_tnet is not None:
            h = h @ self.feature_tnet(h)
        g = self.mlp2(h).amax(dim=-2)  # [T, B, 1024], max over points
        g = self.lif1(self.fc1(g))
        y = self.bn2(self.dropout(self.fc2(g.flatten(0, 1)))).unflatten(0, (T, -1))
        return self.readout(self.lif2(y))


@register("pointnet", "points", 4, "Spiking PointNet (PointNet with LIF, input and feature T-Nets)")
def pointnet(num_classes, in_shape, neuron, timesteps=4, input_transform=True, feature_transform=True,
             dropout=0.4):
    return SpikingPointNet(num_classes, in_shape, neuron, timesteps, input_transform, feature_transform, dropout)
