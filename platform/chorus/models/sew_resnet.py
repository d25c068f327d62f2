"""SEW-ResNet-18/34: spike-element-wise residual blocks (Fang et al., NeurIPS 2021).

A SEW basic block computes the spikes of its residual branch, O = LIF(BN(conv(LIF(BN(conv(x)))))), and
joins them with the (spiking) shortcut S by a connect function g(O, S):

- ``ADD``:  O + S            (the variant the paper's SEW-ResNet34 ImageNet number uses)
- ``AND``:  O · S
- ``IAND``: (1 − O) · S

When the shape changes, the shortcut is conv1×1–BN–LIF, so S is spikes as well. The stem, stages and
head are the spiking ResNet's (:class:`chorus.models.resnet.ResNetBackbone`); with ADD the parameter
count equals ResNet-18/34's.
"""
from __future__ import annotations

import torch
from torch import nn

from chorus.models.layers import run_lif
from chorus.models.neuron_config import NeuronConfig
from chorus.models.registry import register
from chorus.models.resnet import WIDTHS, ResNetBackbone, conv_bn

CONNECTS = ("ADD", "AND", "IAND")


def connect_fn(name: str, out: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
    if name == "ADD":
        return out + shortcut
    if name == "AND":
        return out * shortcut
    return (1.0 - out) * shortcut


class SEWBasicBlock(nn.Module):
    """SEW basic block on ``[T, B, C, H, W]`` with connect function ``connect``."""

    def __init__(self, cin: int, cout: int, stride: int, neuron: NeuronConfig, connect: str = "ADD"):
        super().__init__()
        if connect not in CONNECTS:
            raise ValueError(f"connect={connect!r} is not known; choose one of {', '.join(CONNECTS)}")
        self.connect = connect
        self.branch1 = conv_bn(cin, cout, 3, stride)
        self.lif1 = neuron.make()
        self.branch2 = conv_bn(cout, cout, 3, 1)
        self.lif2 = neuron.make()
        if stride != 1 or cin != cout:
            self.shortcut = conv_bn(cin, cout, 1, stride)
            self.lif_shortcut = neuron.make()
        else:
            self.shortcut = self.lif_shortcut = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[0]
        xf = x.flatten(0, 1)
        out = run_lif(self.lif2, self.branch2(run_lif(self.lif1, self.branch1(xf), T)), T)
        s = xf if self.shortcut is None else run_lif(self.lif_shortcut, self.shortcut(xf), T)
        return connect_fn(self.connect, out, s).unflatten(0, (T, -1))


@register("sew_resnet18", "image", 4, "SEW-ResNet-18 (connect ADD/AND/IAND, default ADD)")
def sew_resnet18(num_classes, in_shape, neuron, connect="ADD", stem="auto", width=1.0, channels_last=True):
    return ResNetBackbone(SEWBasicBlock, (2, 2, 2, 2), WIDTHS, num_classes, in_shape, neuron, stem,
                          width=width, channels_last=channels_last, connect=connect)


@register("sew_resnet34", "image", 4, "SEW-ResNet-34 (connect ADD/AND/IAND, default ADD)")
def sew_resnet34(num_classes, in_shape, neuron, connect="ADD", stem="auto", width=1.0, channels_last=True):
    return ResNetBackbone(SEWBasicBlock, (3, 4, 6, 3), WIDTHS, num_classes, in_shape, neuron, stem,
                          width=width, channels_last=channels_last, connect=connect)
