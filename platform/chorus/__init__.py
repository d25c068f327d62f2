"""Chorus: distributed training of spiking neural networks as ensembles of temporal subnetworks.

The spiking core (``chorus.neurons``, ``chorus.losses``) implements the equations of DESIGN.md
("The spiking core"): LIF neurons with membrane potential smoothing (MPS) and the temporally adjacent
subnetwork guidance (TASG) loss.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
