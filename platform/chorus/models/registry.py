"""The model registry: ``create(name, ...)`` and ``list()`` (docs/architecture.md, "Models").

A model file registers each builder with :func:`register`. Every builder takes
``(num_classes, in_shape, neuron, **kw)`` where ``neuron`` is already a :class:`NeuronConfig`, and
declares the kind of input it accepts (``"image"``: ``(C, H, W)``, ``"sequence"``: ``(F,)``,
``"points"``: ``(N, 3)``) so that a wrong ``in_shape`` fails here with a message that says why.
"""
from __future__ import annotations

import builtins
import operator
from dataclasses import dataclass
from typing import Callable

from torch import nn

from chorus.models.neuron_config import NeuronConfig

INPUT_KINDS = {
    "image": "(channels, height, width), e.g. (2, 48, 48) for events",
    "sequence": "(features,), e.g. (700,) for SHD",
    "points": "(num_points, 3), e.g. (1024, 3)",
}


@dataclass(frozen=True)
class ModelEntry:
    """One registered model: its builder, input kind, default T and a one-line description."""

    name: str
    builder: Callable[..., nn.Module]
    input_kind: str
    default_timesteps: int
    description: str


_REGISTRY: dict[str, ModelEntry] = {}


def register(name: str, input_kind: str, default_timesteps: int, description: str):
    """Decorator: register ``builder(num_classes, in_shape, neuron, **kw)`` under ``name``."""
    if input_kind not in INPUT_KINDS:
        raise ValueError(f"input_kind={input_kind!r} is not known; choose one of {', '.join(INPUT_KINDS)}")

    def deco(builder):
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(name, builder, input_kind, default_timesteps, description)
        return builder

    return deco


def _load_all() -> None:
    """Import the model files so that their ``@register`` lines run (idempotent)."""
    from chorus.models import pointnet, resnet, sdt, sew_resnet, spikformer, srnn, vgg  # noqa: F401


def list() -> builtins.list[str]:  # noqa: A001 - the contract names it ``list``
    """The registered model names, sorted."""
    _load_all()
    return sorted(_REGISTRY)


def entry(name: str) -> ModelEntry:
    """The registry entry of ``name``; an unknown name raises a ``KeyError`` listing the known ones."""
    _load_all()
    if name not in _REGISTRY:
        raise KeyError(f"model {name!r} is not registered; known models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def _as_int(value) -> int | None:
    """``value`` as a Python int when it is an integer (``int``, ``numpy.int64``, a 0-d integer tensor...)
    but not a bool; otherwise None."""
    if isinstance(value, bool) or type(value).__name__ in ("bool_", "bool"):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def check_in_shape(name: str, input_kind: str, in_shape) -> tuple[int, ...]:
    """Validate ``in_shape`` for a model of the given input kind; return it as a tuple of ints."""
    try:
        shape = tuple(in_shape)
    except TypeError:
        raise ValueError(f"in_shape={in_shape!r} for model {name!r} must be a tuple "
                         f"{INPUT_KINDS[input_kind]}") from None
    want = {"image": 3, "sequence": 1, "points": 2}[input_kind]
    shape = tuple(_as_int(s) for s in shape)  # NumPy/torch integers count as integers; None: not one
    ok = len(shape) == want and all(s is not None and s > 0 for s in shape)
    if ok and input_kind == "points" and shape[1] != 3:
        ok = False
    if not ok:
        raise ValueError(
            f"in_shape={in_shape!r} does not fit model {name!r}: it takes per-sample input "
            f"{INPUT_KINDS[input_kind]} without the T and B dimensions")
    return shape


def create(name: str, num_classes: int, in_shape, neuron: dict | None = None, **kw) -> nn.Module:
    """Build the registered model ``name``.

    ``in_shape`` is the per-sample shape without T and B; ``neuron`` holds :class:`chorus.neurons.LIF`
    keyword arguments shared by every spiking layer; other keywords go to the model's builder
    (for example ``timesteps`` for point models, ``width`` for VGG, ``connect`` for SEW-ResNet).
    """
    if not isinstance(name, str):
        raise TypeError(f"name={name!r} must be a string naming a registered model")
    e = entry(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes={num_classes!r} must be a positive integer")
    shape = check_in_shape(name, e.input_kind, in_shape)
    cfg = NeuronConfig.from_dict(neuron)
    try:
        model = e.builder(num_classes, shape, cfg, **kw)
    except TypeError as err:
        if "unexpected keyword argument" in str(err):
            raise TypeError(f"model {name!r}: {err}") from None
        raise
    model.model_name = name
    return model
