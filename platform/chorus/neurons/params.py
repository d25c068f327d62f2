"""The fixed (non-learnable) settings of a LIF layer, validated once (DESIGN.md, "The spiking core")."""
from __future__ import annotations

import math
from dataclasses import dataclass

from chorus.neurons.surrogate import check_surrogate

V_INITS = ("zero", "uniform")


@dataclass(frozen=True)
class LIFParams:
    """Everything the charge/smooth/fire/reset equations need besides the input and α.

    ``v_reset=None`` selects the soft reset (V(t) = H~(t) − V_th·S(t)) with V_r = 0 in the charge.
    """

    tau: float = 2.0
    v_threshold: float = 1.0
    v_reset: float | None = 0.0
    decay_input: bool = True
    detach_reset: bool = False
    surrogate: str = "sigmoid"
    surrogate_alpha: float = 4.0
    mps: bool = False

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


def _is_bool(value) -> bool:
    """A real boolean: Python ``bool`` or a NumPy ``bool_`` (not the string ``'false'``, nor 0/1)."""
    if isinstance(value, bool):
        return True
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy ships with torch
        return False
    return isinstance(value, np.bool_)


def make_params(
    tau: float = 2.0,
    v_threshold: float = 1.0,
    v_reset: float | None = 0.0,
    decay_input: bool = True,
    detach_reset: bool = False,
    surrogate: str = "sigmoid",
    surrogate_alpha: float | None = None,
    mps: bool = False,
) -> LIFParams:
    """Build :class:`LIFParams`, raising a ``ValueError`` that names the argument at fault."""
    for name, value in (("tau", tau), ("v_threshold", v_threshold)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name}={value!r} must be a finite number")
    if tau < 1.0:
        raise ValueError(f"tau={tau!r} must be >= 1 (the membrane decays by 1 - 1/tau per step)")
    if v_reset is not None and (
        isinstance(v_reset, bool) or not isinstance(v_reset, (int, float)) or not math.isfinite(v_reset)
    ):
        raise ValueError(f"v_reset={v_reset!r} must be a finite number, or None for the soft reset")
    for name, value in (("decay_input", decay_input), ("detach_reset", detach_reset), ("mps", mps)):
        if not _is_bool(value):
            raise ValueError(f"{name}={value!r} must be True or False")
    alpha_s = check_surrogate(surrogate, surrogate_alpha)
    return LIFParams(
        tau=float(tau),
        v_threshold=float(v_threshold),
        v_reset=None if v_reset is None else float(v_reset),
        decay_input=bool(decay_input),
        detach_reset=bool(detach_reset),
        surrogate=surrogate,
        surrogate_alpha=alpha_s,
        mps=bool(mps),
    )
