"""Spiking VGG: conv–BN–LIF blocks with average pooling and a linear readout per timestep.

- ``vgg9``: the VGG-9 ("VGGSNN") of the paper's follow-up (arXiv 2510.07924) and of TET
  (Deng et al., ICLR 2022): 64-128-P-256-256-P-512-512-P-512-512-P, then one linear layer on the
  flattened map (input 2×48×48 for DVS, also 64 and 128).
- ``vgg11``: VGG-11 convolutions (configuration "A" of Simonyan & Zisserman):
  64-P-128-P-256-256-P-512-512-P-512-512-P, then two spiking hidden linear layers (``hidden``, 512 by
  default) and the readout: 8 + 3 weight layers.
- ``vgg_small``: a quickstart-sized net (16-P-32-P-64-P-64-P) that trains on 34×34 N-Digits in a couple
  of minutes on two CPU cores.

``width`` scales every conv's channels. Time is folded into the batch once per block; images travel in
the channels-last layout, which the CPU convolutions run faster (see ``bench/models.py``).
"""
from __future__ import annotations

import torch
from torch import nn

from chorus.models.introspect import SpikingModel
from chorus.models.layers import ConvBNLIF, LinearBNLIF, Readout, check_input
from chorus.models.neuron_config import NeuronConfig
from chorus.models.registry import register

CONFIGS = {
    "vgg9": [64, 128, "P", 256, 256, "P", 512, 512, "P", 512, 512, "P"],
    "vgg11": [64, "P", 128, "P", 256, 256, "P", 512, 512, "P", 512, 512, "P"],
    "vgg_small": [16, "P", 32, "P", 64, "P", 64, "P"],
}


class SpikingVGG(SpikingModel):
    """A spiking VGG over ``[T, B, C, H, W]`` → logits ``[T, B, num_classes]``."""

    def __init__(self, cfg: list, num_classes: int, in_shape: tuple[int, int, int], neuron: NeuronConfig,
                 width: float = 1.0, hidden: tuple[int, ...] = (), dropout: float = 0.0,
                 channels_last: bool = True):
        super().__init__()
        if not (isinstance(width, (int, float)) and width > 0):
            raise ValueError(f"width={width!r} must be a positive number")
        self.in_shape = tuple(in_shape)
        self.channels_last = channels_last
        c, h, w = in_shape
        blocks = []
        for item in cfg:
            if item == "P":
                if not blocks or blocks[-1].pool is not None:
                    raise ValueError(f"VGG config {cfg} pools twice in a row or before any conv")
                blocks[-1].pool = nn.AvgPool2d(2)
                h, w = h // 2, w // 2
                if h < 1 or w < 1:
                    raise ValueError(f"in_shape={in_shape!r} is too small for {cfg.count('P')} poolings by 2")
            else:
                cout = max(1, int(round(item * width)))
                blocks.append(ConvBNLIF(c, cout, neuron))
                c = cout
        self.features = nn.Sequential(*blocks)
        head = []
        fin = c * h * w
        for size in hidden:
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise ValueError(f"hidden={size!r} must be a positive integer (the width of the spiking "
                                 "hidden linear layers)")
            head.append(LinearBNLIF(fin, size, neuron, bn=False))
            fin = size
        self.head = nn.Sequential(*head)
        self.readout = Readout(fin, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(type(self).__name__, x, self.in_shape)
        if self.channels_last:
            T = x.shape[0]
            x = x.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, (T, -1))
        x = self.features(x)
        if len(self.head):
            x = self.head(x.flatten(2))
        return self.readout(x)


@register("vgg9", "image", 5, "spiking VGG-9 (VGGSNN of TET / the paper's follow-up), 8 conv + 1 linear")
def vgg9(num_classes, in_shape, neuron, width=1.0, dropout=0.0, channels_last=True):
    return SpikingVGG(CONFIGS["vgg9"], num_classes, in_shape, neuron, width, (), dropout, channels_last)


@register("vgg11", "image", 5, "spiking VGG-11, 8 conv (config A) + 2 spiking linear + readout")
def vgg11(num_classes, in_shape, neuron, width=1.0, hidden=512, dropout=0.0, channels_last=True):
    return SpikingVGG(CONFIGS["vgg11"], num_classes, in_shape, neuron, width, (hidden, hidden), dropout,
                      channels_last)


@register("vgg_small", "image", 5, "quickstart spiking VGG, 4 conv (16-32-64-64) + 1 linear")
def vgg_small(num_classes, in_shape, neuron, width=1.0, dropout=0.0, channels_last=True):
    return SpikingVGG(CONFIGS["vgg_small"], num_classes, in_shape, neuron, width, (), dropout, channels_last)
