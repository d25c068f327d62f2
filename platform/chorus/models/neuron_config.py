"""One ``neuron`` config for every spiking layer of a model (docs/method.md, "The spiking core").

:class:`NeuronConfig` is the one definition of a valid neuron section: its fields, types, defaults and
documentation are made from :data:`chorus.neurons.LIF_FIELDS`, and its values are checked by
:func:`chorus.neurons.check_lif` -- the rules ``LIF`` itself applies. The recipe's ``neuron`` section
(``chorus.config``) and the search space of ``chorus tune`` are this class; every layer of a model asks
it for its ``LIF`` with :meth:`NeuronConfig.make` (attention layers may override a setting: their
threshold stays 0.5 as in the Spikformer and Spike-driven Transformer papers).
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from chorus.neurons import LIF, LIF_FIELDS, LIFArgError, check_lif

LIF_KEYS = tuple(LIF_FIELDS)
_TYPES = {"float": float, "float | null": Optional[float], "bool": bool, "str": str}


class _NeuronBase(BaseModel):
    """Validated ``LIF`` keyword arguments; ``make(**override)`` builds one neuron layer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _lif_rules(cls, data):
        """The neuron's own rules (:func:`check_lif`) on the known keys; unknown keys stay for
        ``extra="forbid"`` to name. A :class:`~chorus.neurons.LIFArgError` carries the argument."""
        if not isinstance(data, dict):
            return data
        known = {k: v for k, v in data.items() if k in LIF_FIELDS}
        return {**data, **check_lif(**known).as_dict()}

    @classmethod
    def from_dict(cls, neuron) -> "NeuronConfig":
        if neuron is None:
            return cls()
        if isinstance(neuron, cls):
            return neuron
        if not isinstance(neuron, dict):
            raise TypeError(f"neuron={neuron!r} must be a dict of LIF keyword arguments or None")
        unknown = sorted(set(neuron) - set(LIF_FIELDS))
        if unknown:
            raise ValueError(f"neuron config has unknown key(s) {', '.join(map(repr, unknown))}; "
                             f"known keys: {', '.join(LIF_FIELDS)}")
        try:
            return cls(**neuron)
        except ValidationError as e:          # the LIF's own error, naming the argument
            cause = (e.errors()[0].get("ctx") or {}).get("error")
            raise (cause if isinstance(cause, LIFArgError) else e) from None

    @property
    def kwargs(self) -> dict:
        return self.model_dump()

    def make(self, **override) -> LIF:
        """A new ``LIF`` with this config, ``override`` taking precedence (e.g. ``v_threshold=0.5``)."""
        return LIF(**{**self.kwargs, **override})


def _field(doc) -> tuple:
    choices = doc.range.split(" | ")
    kind = Literal[tuple(choices)] if doc.type == "str" and len(choices) > 1 else _TYPES[doc.type]
    return kind, Field(doc.default, description=doc.doc, json_schema_extra={"range": doc.range})


NeuronConfig = create_model("NeuronConfig", __base__=_NeuronBase, __module__=__name__,
                            **{name: _field(doc) for name, doc in LIF_FIELDS.items()})
