"""Find the spiking layers of a model, with their qualified names (docs/architecture.md, "Models").

The names are what training logs α under (``mps/alpha/{layer}``) and what the diagnostics use for the
membrane statistics (``membrane/mean_{t}/{layer}``).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

from chorus.neurons import LIF


def spiking_layers(model: nn.Module) -> list[tuple[str, LIF]]:
    """Every chorus ``LIF`` in ``model`` as ``(qualified_name, layer)``, in module order."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return [(name, m) for name, m in model.named_modules() if isinstance(m, LIF)]


def mps_layers(model: nn.Module) -> list[tuple[str, LIF]]:
    """The ``LIF`` layers with membrane potential smoothing on (each owns one learnable β)."""
    return [(name, m) for name, m in spiking_layers(model) if m.mps]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block, then restore every submodule's own ``training`` flag.

    ``model.train(was_training)`` would set every submodule back to train mode, unfreezing e.g. a
    BatchNorm that was frozen with ``.eval()`` for fine-tuning; this restores each flag exactly.
    """
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in flags:
            m.training = training


class SpikingModel(nn.Module):
    """Base of the zoo's models: the same lookups as methods, for ``model.mps_layers()``."""

    def spiking_layers(self) -> list[tuple[str, LIF]]:
        return spiking_layers(self)

    def mps_layers(self) -> list[tuple[str, LIF]]:
        return mps_layers(self)
