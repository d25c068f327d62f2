"""The settings grid every fused-vs-reference neuron test walks (shared by the test modules).

Every combination of reset (hard V_r = 0 / soft), decay_input, detach_reset, surrogate and MPS (off, on
with mps_init "first", on with "zero") at α = 0.37; then the cases where precision and the reset value
bite: a hard reset to V_r = −0.3 with MPS, τ = 3 (a division that is not exact in binary) and α close
to 1 (0.97; 0.995 for the sigmoid surrogate), under both mps_init.
"""
import itertools
from typing import NamedTuple


class Case(NamedTuple):
    v_reset: float | None
    decay_input: bool
    detach_reset: bool
    surrogate: str
    mps: bool
    mps_init: str
    alpha: float
    tau: float

    def params(self) -> dict:
        """``make_params`` keyword arguments."""
        return dict(v_reset=self.v_reset, decay_input=self.decay_input, detach_reset=self.detach_reset,
                    surrogate=self.surrogate, mps=self.mps, mps_init=self.mps_init, tau=self.tau)

    @property
    def id(self) -> str:
        reset = "soft" if self.v_reset is None else f"vr{self.v_reset:g}"
        mps = f"mps-{self.mps_init}-a{self.alpha:g}" if self.mps else "nomps"
        return (f"{reset}-{'decay' if self.decay_input else 'nodecay'}-{'detach' if self.detach_reset else 'keep'}"
                f"-{self.surrogate}-{mps}-tau{self.tau:g}")


_MODES = [(False, "first"), (True, "first"), (True, "zero")]

GRID = [Case(v, d, det, s, m, init, 0.37, 2.0) for v, d, det, s, (m, init) in itertools.product(
    [0.0, None], [True, False], [False, True], ["sigmoid", "atan", "rect"], _MODES)]
GRID += [Case(-0.3, d, det, s, True, init, 0.97, 3.0) for d, det, s, init in itertools.product(
    [True, False], [False, True], ["sigmoid", "atan", "rect"], ["first", "zero"])]
GRID += [Case(v, True, False, "sigmoid", True, init, 0.995, 2.0) for v, init in itertools.product(
    [0.0, None], ["first", "zero"])]

IDS = [c.id for c in GRID]


def inputs(case: Case, seed: int, T: int = 6, shape: tuple = (4, 37)):
    """``(x, g_s, g_h)`` for ``case``: the input and the upstream gradients of S and H~. Under
    mps_init "zero" with α near 1 the smoothed potential starts at (1 − α)·H, so the input is scaled up
    by 0.3 / (1 − α) there, for the case to fire at all within T steps."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(T, *shape, generator=gen) * 1.5 + 0.4
    if case.mps and case.mps_init == "zero" and case.alpha > 0.9:
        x = x * (0.3 / (1 - case.alpha))
    g_s = torch.randn(x.shape, generator=gen)
    g_h = torch.randn(x.shape, generator=gen) * 0.3
    return x, g_s, g_h
