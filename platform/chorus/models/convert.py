"""``chorus.convert``: move a third-party SNN onto chorus neurons (issue 4, "convert").

Each SpikingJelly ``LIFNode`` / ``IFNode`` in multi-step mode is replaced by a chorus
:class:`~chorus.neurons.LIF` with the node's own settings (τ, V_th, V_r or soft reset, decay_input,
detach_reset, surrogate), overlaid with the ``neuron`` settings given here (MPS on unless they say
otherwise). Weights are untouched, so with ``mps=False`` the converted model computes the same outputs
as before (docs/method.md: with MPS off the chorus LIF is SpikingJelly's LIFNode).

The IF neuron (H = V + X) is the τ → ∞ limit of the LIF without input decay. It becomes a LIF with
``decay_input=False`` and τ = ``IF_TAU`` = 1e30: the leak (V − V_r)/τ is then below float32 resolution
for every representable V, so the charge is bit-identical, and ∂H/∂V = 1 − 1/τ rounds to 1.
"""
from __future__ import annotations

import copy

from torch import nn

from chorus.models.neuron_config import NeuronConfig
from chorus.neurons import LIF

IF_TAU = 1e30


def _surrogate_of(node) -> dict:
    """Map a SpikingJelly surrogate function object to chorus ``surrogate``/``surrogate_alpha``."""
    from spikingjelly.activation_based import surrogate as sj_surrogate

    sg = node.surrogate_function
    if type(sg) is sj_surrogate.Sigmoid:
        return {"surrogate": "sigmoid", "surrogate_alpha": float(sg.alpha)}
    if type(sg) is sj_surrogate.ATan:
        return {"surrogate": "atan", "surrogate_alpha": float(sg.alpha)}
    if type(sg) is sj_surrogate.Rect:
        # SpikingJelly: α on |x| < 0.5/α, i.e. a window of width w = 1/α and height 1/w (chorus "rect").
        return {"surrogate": "rect", "surrogate_alpha": 1.0 / float(sg.alpha)}
    return {"surrogate": None, "unsupported": type(sg).__name__}


def _settings_of(name: str, node) -> dict:
    """The chorus LIF settings equivalent to one SpikingJelly neuron node."""
    from spikingjelly.activation_based import neuron as sj_neuron

    if getattr(node, "step_mode", "m") != "m":
        raise ValueError(f"convert: {name} ({type(node).__name__}) is in step_mode={node.step_mode!r}; chorus "
                         "neurons take whole sequences, so set step_mode='m' (e.g. functional.set_step_mode)")
    if getattr(node.surrogate_function, "spiking", True) is False:
        # SpikingJelly then emits the smooth primitive (e.g. sigmoid(αx)), not spikes; a chorus LIF always
        # fires a Heaviside spike, so converting would silently change what the layer computes.
        raise ValueError(f"convert: {name or 'model'} ({type(node).__name__}) has surrogate_function="
                         f"{type(node.surrogate_function).__name__}(spiking=False), so it outputs the smooth "
                         "function instead of spikes; chorus neurons always spike, so it cannot be converted "
                         "faithfully (set spiking=True, e.g. surrogate_function.set_spiking_mode(True))")
    sg = _surrogate_of(node)
    if sg["surrogate"] is None:
        raise ValueError(f"convert: {name} uses the surrogate {sg['unsupported']}; chorus knows "
                         "Sigmoid, ATan and Rect (pass neuron={'surrogate': ...} to choose one instead)")
    settings = {
        "v_threshold": float(node.v_threshold),
        "v_reset": None if node.v_reset is None else float(node.v_reset),
        "detach_reset": bool(node.detach_reset),
        **sg,
    }
    if type(node) is sj_neuron.LIFNode:
        settings.update(tau=float(node.tau), decay_input=bool(node.decay_input))
    else:  # IFNode
        settings.update(tau=IF_TAU, decay_input=False)
    return settings


def _convertible_types():
    from spikingjelly.activation_based import neuron as sj_neuron

    return sj_neuron.LIFNode, sj_neuron.IFNode


def convert(model: nn.Module, neuron: dict | None = None, inplace: bool = False) -> nn.Module:
    """Replace SpikingJelly ``LIFNode``/``IFNode`` modules (multi-step) by chorus ``LIF`` layers.

    ``neuron`` holds chorus ``LIF`` keyword arguments laid over each node's own settings; it defaults
    to ``{"mps": True}``. Any other SpikingJelly neuron type is an error that names the module, since
    leaving it behind would silently keep part of the network off MPS. Returns a copy unless
    ``inplace``; raises if the model has no convertible neuron at all.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"convert: model must be a torch.nn.Module, got {type(model).__name__}")
    overlay = {"mps": True, **(neuron or {})}
    NeuronConfig.from_dict(overlay)  # unknown keys and bad values fail here, naming the key
    try:
        kinds = _convertible_types()
        from spikingjelly.activation_based.neuron import BaseNode
    except ImportError as err:
        raise ImportError("convert needs spikingjelly (pip install --no-deps spikingjelly)") from err
    out = model if inplace else copy.deepcopy(model)
    targets = []
    for name, m in out.named_modules():
        if type(m) in kinds:
            targets.append((name, m))
        elif isinstance(m, BaseNode):
            raise ValueError(f"convert: {name or 'model'} is a SpikingJelly {type(m).__name__}; only "
                             "LIFNode and IFNode can be converted")
    if not targets:
        raise ValueError("convert: the model has no SpikingJelly LIFNode or IFNode to replace")
    for name, node in targets:
        lif = LIF(**{**_settings_of(name, node), **overlay})
        _set_submodule(out, name, lif)
    return out


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    if name == "":
        raise ValueError("convert: the model itself is a neuron; wrap it in a container first")
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


__all__ = ["convert", "IF_TAU"]
