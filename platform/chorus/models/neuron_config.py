"""One ``neuron`` config for every spiking layer of a model (issue 4; DESIGN.md, "Recipes and runs").

A recipe's ``neuron`` section holds :class:`chorus.neurons.LIF` keyword arguments (τ, V_th, reset,
surrogate, MPS, α_init, v_init, ...). :class:`NeuronConfig` checks the keys once, and every layer of
the model asks it for its ``LIF`` with :meth:`NeuronConfig.make`; attention layers may override a
setting (their threshold stays 0.5 as in the Spikformer and Spike-driven Transformer papers).
"""
from __future__ import annotations

import inspect

from chorus.neurons import LIF

LIF_KEYS = tuple(p for p in inspect.signature(LIF.__init__).parameters if p != "self")


class NeuronConfig:
    """Validated ``LIF`` keyword arguments; ``make(**override)`` builds one neuron layer."""

    def __init__(self, **kwargs):
        unknown = sorted(set(kwargs) - set(LIF_KEYS))
        if unknown:
            raise ValueError(f"neuron config has unknown key(s) {', '.join(map(repr, unknown))}; "
                             f"known keys: {', '.join(LIF_KEYS)}")
        self.kwargs = dict(kwargs)
        LIF(**self.kwargs)  # validate the values now, so a bad value fails at create() and names its key

    @classmethod
    def from_dict(cls, neuron) -> "NeuronConfig":
        if neuron is None:
            return cls()
        if isinstance(neuron, NeuronConfig):
            return neuron
        if not isinstance(neuron, dict):
            raise TypeError(f"neuron={neuron!r} must be a dict of LIF keyword arguments or None")
        return cls(**neuron)

    def make(self, **override) -> LIF:
        """A new ``LIF`` with this config, ``override`` taking precedence (e.g. ``v_threshold=0.5``)."""
        return LIF(**{**self.kwargs, **override})

    @property
    def mps(self) -> bool:
        return bool(self.kwargs.get("mps", False))

    def __repr__(self) -> str:
        return f"NeuronConfig({self.kwargs})"
