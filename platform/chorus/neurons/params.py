"""What a valid LIF layer is: its arguments, their defaults and rules, checked in one place.

This module is the one definition of a valid LIF (docs/method.md, "The spiking core"). ``LIF`` checks
its arguments with :func:`check_lif`; the recipe's ``neuron`` section and the search space of
``chorus tune`` call the same function, and ``chorus train --help-recipe`` prints :data:`LIF_FIELDS`.
Errors are :class:`LIFArgError`, which carries the argument name so a caller can name its own key
(``neuron.tau``) instead.

:class:`LIFParams` is the part the charge/smooth/fire/reset kernels need (everything but α and V(0)).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

from chorus.neurons.surrogate import DEFAULT_ALPHA, SURROGATES

V_INITS = ("zero", "uniform")
MPS_INITS = ("first", "zero")


class LIFArgError(ValueError):
    """A LIF argument that breaks its rule. ``arg`` is the argument's name, ``value`` what was given,
    ``rule`` what it must be; ``str(e)`` reads ``"tau=0.5 must be >= 1 (...)"``."""

    def __init__(self, arg: str, value: Any, rule: str):
        self.arg, self.value, self.rule = arg, value, rule
        super().__init__(f"{arg}={value!r} {rule}")


class FieldDoc(NamedTuple):
    """How one LIF argument is documented: its type, default, allowed range and meaning."""

    type: str
    default: Any
    range: str
    doc: str


# Every LIF constructor argument but ``backend``, in signature order. Defaults follow SpikingJelly's
# LIFNode (τ = 2, V_th = 1, V_r = 0, decay_input, sigmoid surrogate with α_s = 4), MPS off.
LIF_FIELDS: dict[str, FieldDoc] = {
    "tau": FieldDoc("float", 2.0, ">= 1", "membrane time constant τ; the potential decays by 1 - 1/τ per step"),
    "v_threshold": FieldDoc("float", 1.0, "finite", "firing threshold V_th"),
    "v_reset": FieldDoc("float | null", 0.0, "finite, or null", "reset value V_r (hard reset); null = soft reset"),
    "decay_input": FieldDoc("bool", True, "true | false", "the input is divided by τ in the charge"),
    "detach_reset": FieldDoc("bool", False, "true | false", "S(t) is detached inside the reset only"),
    "surrogate": FieldDoc("str", "sigmoid", " | ".join(SURROGATES), "surrogate gradient of the firing step"),
    "surrogate_alpha": FieldDoc("float | null", None, "> 0, finite, or null",
                                "α_s (sigmoid, atan) or window width w (rect); null = "
                                + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_ALPHA.items())),
    "mps": FieldDoc("bool", False, "true | false", "membrane potential smoothing with one learnable α per layer"),
    "mps_init": FieldDoc("str", "first", " | ".join(MPS_INITS),
                         "start of the smoothed potential: first = H~(1) = H(1); zero = H~(0) = 0 (ablation)"),
    "alpha_init": FieldDoc("float", 0.5, "in (0, 1)", "initial α = sigmoid(β); β starts at logit(alpha_init)"),
    "v_init": FieldDoc("str", "zero", " | ".join(V_INITS), "initial potential: zero = V_r; uniform = U[0, scale)"),
    "v_init_scale": FieldDoc("float | null", None, "> 0, finite, or null",
                             "scale of v_init: uniform; null = v_threshold"),
}


@dataclass(frozen=True)
class LIFParams:
    """Everything the charge/smooth/fire/reset equations need besides the input, α and V(0).

    ``v_reset=None`` selects the soft reset (V(t) = H~(t) − V_th·S(t)) with V_r = 0 in the charge.
    ``mps_init="first"`` starts the smoothed potential at the first charge, H~(1) = H(1);
    ``"zero"`` starts it at H~(0) = 0, so H~(1) = (1 − α)·H(1).
    """

    tau: float = 2.0
    v_threshold: float = 1.0
    v_reset: float | None = 0.0
    decay_input: bool = True
    detach_reset: bool = False
    surrogate: str = "sigmoid"
    surrogate_alpha: float = 4.0
    mps: bool = False
    mps_init: str = "first"

    @property
    def soft_reset(self) -> bool:
        return self.v_reset is None

    @property
    def vr(self) -> float:
        """V_r as it enters the charge equation (0 for the soft reset)."""
        return 0.0 if self.v_reset is None else float(self.v_reset)

    @property
    def k(self) -> float:
        """∂H(t)/∂V(t−1) = 1 − 1/τ."""
        return 1.0 - 1.0 / self.tau

    @property
    def c(self) -> float:
        """∂H(t)/∂X(t): 1/τ with decay_input, else 1."""
        return 1.0 / self.tau if self.decay_input else 1.0


@dataclass(frozen=True)
class LIFConfig:
    """Every LIF argument, checked (:func:`check_lif`), defaults filled (``surrogate_alpha`` and
    ``v_init_scale`` stay as given; :attr:`params` and :attr:`init_scale` resolve them)."""

    tau: float = 2.0
    v_threshold: float = 1.0
    v_reset: float | None = 0.0
    decay_input: bool = True
    detach_reset: bool = False
    surrogate: str = "sigmoid"
    surrogate_alpha: float | None = None
    mps: bool = False
    mps_init: str = "first"
    alpha_init: float = 0.5
    v_init: str = "zero"
    v_init_scale: float | None = None

    @property
    def params(self) -> LIFParams:
        return LIFParams(self.tau, self.v_threshold, self.v_reset, self.decay_input, self.detach_reset,
                         self.surrogate, DEFAULT_ALPHA[self.surrogate] if self.surrogate_alpha is None
                         else self.surrogate_alpha, self.mps, self.mps_init)

    @property
    def init_scale(self) -> float:
        """The scale of ``v_init: uniform``: V(0) ~ U[0, scale)."""
        return self.v_threshold if self.v_init_scale is None else self.v_init_scale

    def as_dict(self) -> dict:
        return asdict(self)


assert tuple(f.name for f in fields(LIFConfig)) == tuple(LIF_FIELDS), "LIF_FIELDS and LIFConfig disagree"


def _is_bool(value) -> bool:
    """A real boolean: Python ``bool`` or a NumPy ``bool_`` (not the string ``'false'``, nor 0/1)."""
    if isinstance(value, bool):
        return True
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy ships with torch
        return False
    return isinstance(value, np.bool_)


def _is_number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def check_lif(**kwargs) -> LIFConfig:
    """Check LIF arguments by the rules of :data:`LIF_FIELDS`; unknown names are errors too.

    Returns the :class:`LIFConfig` (numbers as floats); raises :class:`LIFArgError` naming the first
    argument at fault, in signature order.
    """
    for name in kwargs:
        if name not in LIF_FIELDS:
            raise LIFArgError(name, kwargs[name], "is not a LIF argument; known: " + ", ".join(LIF_FIELDS))
    a = {**{k: f.default for k, f in LIF_FIELDS.items()}, **kwargs}
    for name in ("tau", "v_threshold"):
        if not _is_number(a[name]):
            raise LIFArgError(name, a[name], "must be a finite number")
    if a["tau"] < 1.0:
        raise LIFArgError("tau", a["tau"], "must be >= 1 (the membrane decays by 1 - 1/tau per step)")
    if a["v_reset"] is not None and not _is_number(a["v_reset"]):
        raise LIFArgError("v_reset", a["v_reset"], "must be a finite number, or None for the soft reset")
    for name in ("decay_input", "detach_reset"):
        if not _is_bool(a[name]):
            raise LIFArgError(name, a[name], "must be True or False")
    if a["surrogate"] not in SURROGATES:
        raise LIFArgError("surrogate", a["surrogate"], "is not known; choose one of " + ", ".join(SURROGATES))
    if a["surrogate_alpha"] is not None and not (_is_number(a["surrogate_alpha"]) and a["surrogate_alpha"] > 0):
        raise LIFArgError("surrogate_alpha", a["surrogate_alpha"], "must be a positive finite number (or None)")
    if not _is_bool(a["mps"]):
        raise LIFArgError("mps", a["mps"], "must be True or False")
    if a["mps_init"] not in MPS_INITS:
        raise LIFArgError("mps_init", a["mps_init"], "is not known; choose one of " + ", ".join(MPS_INITS))
    if not (_is_number(a["alpha_init"]) and 0.0 < a["alpha_init"] < 1.0):
        raise LIFArgError("alpha_init", a["alpha_init"], "must lie strictly between 0 and 1 (α = sigmoid(β))")
    if a["v_init"] not in V_INITS:
        raise LIFArgError("v_init", a["v_init"], "is not known; choose one of " + ", ".join(V_INITS))
    if a["v_init_scale"] is not None and not (_is_number(a["v_init_scale"]) and a["v_init_scale"] > 0):
        raise LIFArgError("v_init_scale", a["v_init_scale"], "must be a positive finite number (or None)")
    floats = ("tau", "v_threshold", "alpha_init")
    out = {k: (float(v) if k in floats else v) for k, v in a.items()}
    for k in ("v_reset", "surrogate_alpha", "v_init_scale"):
        out[k] = None if a[k] is None else float(a[k])
    for k in ("decay_input", "detach_reset", "mps"):
        out[k] = bool(a[k])
    return LIFConfig(**out)


def make_params(
    tau: float = 2.0,
    v_threshold: float = 1.0,
    v_reset: float | None = 0.0,
    decay_input: bool = True,
    detach_reset: bool = False,
    surrogate: str = "sigmoid",
    surrogate_alpha: float | None = None,
    mps: bool = False,
    mps_init: str = "first",
) -> LIFParams:
    """Build :class:`LIFParams`, raising a ``ValueError`` (:class:`LIFArgError`) naming the argument."""
    return check_lif(tau=tau, v_threshold=v_threshold, v_reset=v_reset, decay_input=decay_input,
                     detach_reset=detach_reset, surrogate=surrogate, surrogate_alpha=surrogate_alpha,
                     mps=mps, mps_init=mps_init).params
