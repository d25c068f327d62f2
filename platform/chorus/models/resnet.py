"""Spiking ResNet-18/19/34: the ResNet of He et al. (2016) with LIF neurons in place of ReLU.

Blocks are the basic block: conv–BN–LIF–conv–BN, plus the shortcut (identity, or conv1×1–BN when the
shape changes), then a LIF after the sum (the "spiking ResNet" of SpikingJelly and of Zheng et al.,
AAAI 2021). Stems: ``"imagenet"`` (conv 7×7/2, BN, LIF, max-pool 3×3/2) or ``"cifar"`` (conv 3×3/1,
BN, LIF); ``"auto"`` picks the ImageNet stem for inputs of at least 112 pixels a side.

- ``resnet18`` / ``resnet34``: 2-2-2-2 / 3-4-6-3 blocks, widths 64-128-256-512; with the ImageNet stem,
  3 input channels and 1000 classes they have exactly the parameters of torchvision's ResNet-18/34.
- ``resnet19``: the CIFAR ResNet-19 of tdBN (Zheng et al., AAAI 2021) and TET: cifar stem with 128
  channels, 3-3-2 blocks of widths 128-256-512, then a spiking hidden linear layer of 256 and the readout.

``width`` scales every stage's channels (1.0 = the published nets). The backbone class
:class:`ResNetBackbone` takes the block type, so the SEW-ResNets (``sew_resnet.py``) share the stem,
stages and head.
"""
from __future__ import annotations

import torch
from torch import nn

from chorus.models.introspect import SpikingModel
from chorus.models.layers import ConvBNLIF, LinearBNLIF, Readout, check_input, run_lif
from chorus.models.neuron_config import NeuronConfig
from chorus.models.registry import register

STEMS = ("auto", "imagenet", "cifar")


def conv_bn(cin: int, cout: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout))


class SpikingBasicBlock(nn.Module):
    """conv–BN–LIF–conv–BN (+ shortcut) → LIF on ``[T, B, C, H, W]``; time folded once."""

    def __init__(self, cin: int, cout: int, stride: int, neuron: NeuronConfig):
        super().__init__()
        self.branch1 = conv_bn(cin, cout, 3, stride)
        self.lif1 = neuron.make()
        self.branch2 = conv_bn(cout, cout, 3, 1)
        self.shortcut = conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else None
        self.lif2 = neuron.make()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[0]
        xf = x.flatten(0, 1)
        y = self.branch2(run_lif(self.lif1, self.branch1(xf), T))
        y = y + (xf if self.shortcut is None else self.shortcut(xf))
        return run_lif(self.lif2, y, T).unflatten(0, (T, -1))


class ResNetBackbone(SpikingModel):
    """Stem, four (or three) stages of blocks, global average pooling, optional spiking hidden layer, readout."""

    def __init__(self, block: type, blocks: tuple[int, ...], widths: tuple[int, ...], num_classes: int,
                 in_shape: tuple[int, int, int], neuron: NeuronConfig, stem: str = "auto",
                 width: float = 1.0, hidden: int | None = None, channels_last: bool = True, **block_kw):
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"stem={stem!r} is not known; choose one of {', '.join(STEMS)}")
        if len(blocks) != len(widths):
            raise ValueError(f"blocks={blocks} and widths={widths} must have the same length")
        if not (isinstance(width, (int, float)) and width > 0):
            raise ValueError(f"width={width!r} must be a positive number")
        widths = tuple(max(1, int(round(wd * width))) for wd in widths)
        c, h, w = in_shape
        if stem == "auto":
            stem = "imagenet" if min(h, w) >= 112 else "cifar"
        self.in_shape, self.stem_kind, self.channels_last = tuple(in_shape), stem, channels_last
        c0 = widths[0]
        if stem == "imagenet":
            self.stem = ConvBNLIF(c, c0, neuron, kernel=7, stride=2, pool=nn.MaxPool2d(3, 2, 1))
        else:
            self.stem = ConvBNLIF(c, c0, neuron, kernel=3, stride=1)
        stages, cin = [], c0
        for i, (n, cout) in enumerate(zip(blocks, widths)):
            layers = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(block(cin, cout, stride, neuron, **block_kw))
                cin = cout
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.hidden = LinearBNLIF(cin, hidden, neuron, bn=False) if hidden else None
        self.readout = Readout(hidden or cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(type(self).__name__, x, self.in_shape)
        T = x.shape[0]
        if self.channels_last:
            x = x.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, (T, -1))
        x = self.stages(self.stem(x))
        x = self.pool(x.flatten(0, 1)).flatten(1).unflatten(0, (T, -1))
        if self.hidden is not None:
            x = self.hidden(x)
        return self.readout(x)


WIDTHS = (64, 128, 256, 512)


@register("resnet18", "image", 4, "spiking ResNet-18 (basic blocks 2-2-2-2, LIF after each sum)")
def resnet18(num_classes, in_shape, neuron, stem="auto", width=1.0, channels_last=True):
    return ResNetBackbone(SpikingBasicBlock, (2, 2, 2, 2), WIDTHS, num_classes, in_shape, neuron, stem,
                          width=width, channels_last=channels_last)


@register("resnet34", "image", 4, "spiking ResNet-34 (basic blocks 3-4-6-3)")
def resnet34(num_classes, in_shape, neuron, stem="auto", width=1.0, channels_last=True):
    return ResNetBackbone(SpikingBasicBlock, (3, 4, 6, 3), WIDTHS, num_classes, in_shape, neuron, stem,
                          width=width, channels_last=channels_last)


@register("resnet19", "image", 4, "spiking ResNet-19 of tdBN/TET (3-3-2 blocks, 128-256-512, fc 256)")
def resnet19(num_classes, in_shape, neuron, stem="cifar", width=1.0, channels_last=True):
    return ResNetBackbone(SpikingBasicBlock, (3, 3, 2), (128, 256, 512), num_classes, in_shape, neuron, stem,
                          width=width, hidden=256, channels_last=channels_last)
