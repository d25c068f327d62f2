"""Losses of the ensemble view: TASG and ``CE(mean_t o_t) + γ·TASG`` (docs/method.md, "The spiking core")."""
from chorus.losses.ensemble import CE_MODES, EnsembleLoss, ensemble_loss
from chorus.losses.tasg import tasg_loss

__all__ = ["tasg_loss", "ensemble_loss", "EnsembleLoss", "CE_MODES"]
