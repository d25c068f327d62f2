"""Spiking neurons: LIF with membrane potential smoothing (docs/method.md, "The spiking core")."""
from chorus.neurons.backends import BACKENDS
from chorus.neurons.fused import lif_fused
from chorus.neurons.lif import LIF, LIFStates
from chorus.neurons.params import LIF_FIELDS, LIFArgError, LIFConfig, LIFParams, check_lif, make_params
from chorus.neurons.reference import lif_reference
from chorus.neurons.surrogate import SURROGATES, heaviside, spike, surrogate_grad

__all__ = [
    "LIF", "LIFStates", "LIFParams", "LIFConfig", "LIFArgError", "LIF_FIELDS", "check_lif", "BACKENDS", "SURROGATES", "make_params", "lif_fused",
    "lif_reference", "heaviside", "spike", "surrogate_grad",
]
