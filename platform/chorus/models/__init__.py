"""The Chorus model zoo (issue 4; docs/architecture.md, "Models").

Spiking VGG, ResNet, SEW-ResNet, Spikformer, Spike-driven Transformer, Spiking PointNet and SRNN built
on :class:`chorus.neurons.LIF`, all taking time-first input and returning per-timestep logits
``[T, B, num_classes]``. ``create(name, num_classes, in_shape, neuron=...)`` builds one by name;
``convert(model, neuron=...)`` brings a SpikingJelly SNN onto chorus neurons.
"""
from chorus.models.convert import IF_TAU, convert
from chorus.models.introspect import SpikingModel, eval_mode, mps_layers, spiking_layers
from chorus.models.neuron_config import LIF_KEYS, NeuronConfig
from chorus.models.registry import create, entry, list, register

__all__ = ["create", "list", "convert", "IF_TAU", "entry", "register", "mps_layers", "spiking_layers", "eval_mode", "SpikingModel",
           "NeuronConfig", "LIF_KEYS"]
