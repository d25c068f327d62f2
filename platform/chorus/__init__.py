"""Chorus: distributed training of spiking neural networks as ensembles of temporal subnetworks.

The spiking core (``chorus.neurons``, ``chorus.losses``) implements the equations of docs/method.md
("The spiking core"): LIF neurons with membrane potential smoothing (MPS) and the temporally adjacent
subnetwork guidance (TASG) loss.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]


def __getattr__(name):
    """Lazy access to ``chorus.models`` and ``chorus.convert`` (keeps ``import chorus`` light)."""
    if name == "models":
        import importlib

        return importlib.import_module("chorus.models")
    if name == "convert":
        from chorus.models.convert import convert

        return convert
    raise AttributeError(f"module 'chorus' has no attribute {name!r}")
