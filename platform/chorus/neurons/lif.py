"""The ``LIF`` layer: leaky integrate-and-fire with optional membrane potential smoothing (MPS).

Implements docs/method.md, "The spiking core": a layer maps a whole sequence ``[T, B, ...]`` to spikes of
the same shape and keeps no state between calls. With ``mps=True`` it owns one learnable scalar β and
smooths its potential with α = sigmoid(β), β initialised to logit(α_init).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from chorus.neurons.backends import canonical, resolve
from chorus.neurons.fused import lif_fused
from chorus.neurons.params import check_lif
from chorus.neurons.reference import lif_reference


class LIFStates(NamedTuple):
    """One call's potentials, each ``[T, B, ...]`` in fp32 (or fp64): H~(t), differentiable (a loss on it
    back-propagates), and the carried potential V(t−1), detached (diagnostics only)."""

    h_tilde: torch.Tensor
    v_prev: torch.Tensor


class LIF(nn.Module):
    """Leaky integrate-and-fire neuron over a time-first sequence, with optional MPS.

    Args mirror SpikingJelly's ``LIFNode`` (τ = 2, V_th = 1, V_r = 0, decay_input, sigmoid surrogate with
    α_s = 4), so that with MPS off both give the same spikes and gradients. ``v_reset=None`` is the soft
    reset. ``v_init="uniform"`` draws V(0) from U[0, v_init_scale) per neuron and sample.
    ``backend`` names the implementation (:mod:`chorus.neurons.backends`): ``"auto"`` (the default)
    picks the fastest correct one for the input's device on this machine; ``"reference"`` runs the plain
    per-timestep loop (the readable definition); ``"torch"``, ``"inductor"``, ``"c"`` and ``"triton"``
    name one implementation explicitly (an error where it cannot run the input).

    ``forward(x, return_states=True)`` also returns :class:`LIFStates`; setting ``record_states = True``
    keeps the last call's states in ``self.last_states`` (detached) for diagnostics.
    """

    def __init__(
        self,
        tau: float = 2.0,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        decay_input: bool = True,
        detach_reset: bool = False,
        surrogate: str = "sigmoid",
        surrogate_alpha: float | None = None,
        mps: bool = False,
        mps_init: str = "first",
        alpha_init: float = 0.5,
        v_init: str = "zero",
        v_init_scale: float | None = None,
        backend: str = "auto",
    ):
        super().__init__()
        cfg = check_lif(tau=tau, v_threshold=v_threshold, v_reset=v_reset, decay_input=decay_input,
                        detach_reset=detach_reset, surrogate=surrogate, surrogate_alpha=surrogate_alpha,
                        mps=mps, mps_init=mps_init, alpha_init=alpha_init, v_init=v_init,
                        v_init_scale=v_init_scale)
        backend = canonical(backend)
        self.config = cfg
        self.p = cfg.params
        self.alpha_init = cfg.alpha_init
        self.v_init = cfg.v_init
        self.v_init_scale = cfg.init_scale
        self.backend = backend
        self.record_states = False
        self.last_states: LIFStates | None = None
        if cfg.mps:
            # one learnable scalar, stored as shape [1]: DeepSpeed ZeRO-3 cannot partition 0-dim parameters
            self.beta = nn.Parameter(torch.full((1,), math.log(cfg.alpha_init / (1.0 - cfg.alpha_init))))
        else:
            self.register_parameter("beta", None)

    @property
    def mps(self) -> bool:
        return self.p.mps

    @property
    def alpha(self) -> torch.Tensor:
        """The current smoothing coefficient α = sigmoid(β), shape [1] (a 0-dim 0 for a vanilla LIF)."""
        if self.beta is None:
            return torch.zeros(())
        return torch.sigmoid(self.beta)

    def extra_repr(self) -> str:
        p = self.p
        s = (f"tau={p.tau}, v_threshold={p.v_threshold}, v_reset={p.v_reset}, decay_input={p.decay_input}, "
             f"surrogate={p.surrogate}({p.surrogate_alpha}), mps={p.mps}")
        if p.mps:
            s += f", mps_init={p.mps_init}"
        if p.mps:
            s += f", alpha={float(self.alpha):.4f}"
        return s

    def _check(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"LIF input must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() < 2:
            raise ValueError(f"LIF input must be time-first [T, B, ...] with at least 2 dims; got shape {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise ValueError(f"LIF input has no timesteps: T = 0 in shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"LIF input must be a floating-point tensor; got dtype {x.dtype}")

    def _takes_low_precision(self, x: torch.Tensor) -> bool:
        if self.backend == "reference":
            return False
        return resolve(self.backend, x.reshape(x.shape[0], -1), self.p) == "triton"

    def forward(self, x: torch.Tensor, return_states: bool = False):
        self._check(x)
        want_states = return_states or self.record_states
        out_dtype = x.dtype
        with torch.autocast(device_type=x.device.type, enabled=False):
            # the membrane is fp32 (or fp64); a backend that loads fp16/bf16 itself (Triton) takes them as they are
            xf = x if x.dtype in (torch.float32, torch.float64) or self._takes_low_precision(x) else x.float()
            mdtype = torch.float64 if xf.dtype == torch.float64 else torch.float32
            v0 = None
            if self.v_init == "uniform":
                v0 = torch.rand(xf.shape[1:], device=xf.device, dtype=mdtype) * self.v_init_scale
            alpha = torch.sigmoid(self.beta).to(mdtype) if self.beta is not None else xf.new_zeros((), dtype=mdtype)
            if self.backend == "reference":
                s, hs, vp = lif_reference(xf, alpha, self.p, v0)
                vp = vp.detach()
            else:
                s, hs, vp = lif_fused(xf, alpha, self.p, v0, want_vprev=want_states, spikes_only=not want_states,
                                      backend=self.backend)
        s = s.to(out_dtype)
        if not want_states:
            return s
        states = LIFStates(hs, vp)
        if self.record_states:
            self.last_states = LIFStates(hs.detach(), vp.detach())
        return (s, states) if return_states else s
