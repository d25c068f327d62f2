"""Surrogate gradients for the firing step S(t) = Θ(H~(t) − V_th) (docs/method.md, "The spiking core").

The forward pass is always the Heaviside step ``x >= 0``; only the backward pass differs:

- ``sigmoid``: α_s·σ(α_s x)(1 − σ(α_s x)), α_s = 4 by default (SpikingJelly's default);
- ``atan``:    (α_s / 2) / (1 + (π/2 · α_s · x)²), α_s = 2 by default;
- ``rect``:    1/w on |x| < w/2, w = 1 by default (the paper's rectangular window).
"""
from __future__ import annotations

import math

import torch

SURROGATES = ("sigmoid", "atan", "rect")
DEFAULT_ALPHA = {"sigmoid": 4.0, "atan": 2.0, "rect": 1.0}
SURROGATE_CODE = {"sigmoid": 0, "atan": 1, "rect": 2}


def check_surrogate(name: str, alpha: float | None) -> float:
    """Validate a surrogate name and its parameter; return the parameter with its default filled."""
    if name not in SURROGATES:
        raise ValueError(f"surrogate={name!r} is not known; choose one of {', '.join(SURROGATES)}")
    if alpha is None:
        return DEFAULT_ALPHA[name]
    alpha = float(alpha)
    if not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"surrogate_alpha={alpha!r} must be a positive finite number")
    return alpha


def heaviside(x: torch.Tensor) -> torch.Tensor:
    """Θ(x) with Θ(0) = 1, as in docs/method.md (``x >= 0``), in the dtype of ``x``."""
    return (x >= 0).to(x.dtype)


def surrogate_grad(name: str, alpha: float, x: torch.Tensor) -> torch.Tensor:
    """dΘ/dx as seen by the backward pass, evaluated at ``x = H~ − V_th``."""
    if name == "sigmoid":
        sg = torch.sigmoid(x * alpha)
        return (1.0 - sg) * sg * alpha
    if name == "atan":
        return alpha / 2 / (1 + (math.pi / 2 * alpha * x).pow(2))
    if name == "rect":
        return (x.abs() < alpha / 2).to(x.dtype) / alpha
    raise ValueError(f"surrogate={name!r} is not known; choose one of {', '.join(SURROGATES)}")


class SpikeFn(torch.autograd.Function):
    """Heaviside forward, surrogate backward: the firing step used by the plain reference neuron."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, name: str, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.name, ctx.alpha = name, alpha
        return heaviside(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad * surrogate_grad(ctx.name, ctx.alpha, x), None, None


def spike(x: torch.Tensor, name: str = "sigmoid", alpha: float | None = None) -> torch.Tensor:
    """S = Θ(x) with the named surrogate gradient."""
    return SpikeFn.apply(x, name, check_surrogate(name, alpha))
