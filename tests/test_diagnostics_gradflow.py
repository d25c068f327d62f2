"""The temporal gradient flow of a single LIF layer against its analytic value at T = 3.

Network: one neuron, X(t) = 0.6 for t = 1, 2, 3, LIF (τ = 2, V_th = 1, hard reset to 0, decay_input,
``detach_reset``, sigmoid surrogate Θ'(u) = 4σ(4u)(1 − σ(4u))), then a readout o_t = (w·S(t), 0) with
w = 2 and label y = 0.

Forward with MPS (α = 1/2), H~(0) = 0, V(0) = 0:
    H(1) = 0.3,  H~(1) = 0.15;   V(1) = 0.15
    H(2) = 0.15 + (0.6 − 0.15)/2 = 0.375,  H~(2) = (0.15 + 0.375)/2 = 0.2625;   V(2) = 0.2625
    H(3) = 0.2625 + (0.6 − 0.2625)/2 = 0.43125,  H~(3) = (0.2625 + 0.43125)/2 = 0.346875
No spike (all H~ < 1), so o_t = (0, 0), softmax = (1/2, 1/2) and for ℓ_t = CE(o_t, 0):
∂ℓ_t/∂S(t) = (1/2 − 1)·w = −1.

Backward: ∂H~(t)/∂X(t) = (1 − α)/τ = 1/4. With the reset detached, ∂V(t)/∂H~(t) = 1 − S(t) = 1, and
∂H~(t)/∂H~(t−1) = α + (1 − α)·(1 − 1/τ)·∂V(t−1)/∂H~(t−1) = 1/2 + 1/4 = 3/4. Hence
    |∂ℓ_t'/∂X(t'−d)| = Θ'(H~(t') − 1) · (3/4)^d · 1/4,
and ``gradflow/lif/dt_d`` is its mean over t' = d+1..3.

Vanilla (MPS off): H(1) = 0.3, H(2) = 0.45, H(3) = 0.525 (no spikes); ∂H(t)/∂X(t) = 1/τ = 1/2 and
∂H(t)/∂H(t−1) = (1 − 1/τ)·1 = 1/2, so |∂ℓ_t'/∂X(t'−d)| = Θ'(H(t') − 1)·(1/2)^d·1/2: the gradient
that travels back d steps decays as (1/2)^d without MPS and as (3/4)^d with it (the paper's claim).

Training loss CE(mean_t o_t, 0): softmax of the mean is (1/2, 1/2), ∂L/∂S(t) = −w/(2T) = −1/3, so
|∂L/∂X(t)| = Σ_{t' ≥ t} (1/3)·Θ'(H~(t') − 1)·a^{t'−t}·c with (a, c) = (3/4, 1/4) or (1/2, 1/2).
"""
import math

import pytest
import torch
from torch import nn

from chorus.diagnostics import collect, names


def theta_prime(u):
    s = 1 / (1 + math.exp(-4 * u))
    return 4 * s * (1 - s)


class OneNeuron(nn.Module):
    def __init__(self, mps):
        from chorus.neurons import LIF

        super().__init__()
        # the hand computation below starts the smoothed potential at H~(0) = 0 (mps_init "zero")
        self.lif = LIF(mps=mps, alpha_init=0.5, detach_reset=True, mps_init="zero")
        self.readout = nn.Linear(1, 2, bias=False)
        with torch.no_grad():
            self.readout.weight.copy_(torch.tensor([[2.0], [0.0]]))

    def forward(self, x):
        return self.readout(self.lif(x))


@pytest.mark.parametrize("mps, potentials, a, c", [
    (True, [0.15, 0.2625, 0.346875], 0.75, 0.25),
    (False, [0.3, 0.45, 0.525], 0.5, 0.5),
])
def test_gradient_flow_matches_analytic_value(mps, potentials, a, c):
    x = torch.full((3, 1, 1), 0.6)
    batches = [(x, torch.zeros(1, dtype=torch.long))]
    m = collect(OneNeuron(mps), batches, render=False).metrics
    tp = [theta_prime(h - 1.0) for h in potentials]
    for d in range(3):
        expected = sum(tp[t] * a ** d * c for t in range(d, 3)) / (3 - d)
        assert m[names.gradflow("lif", d)] == pytest.approx(expected, rel=1e-5)
        # The ratio is taken per t' (Θ'(H~(t')) and c cancel), so it is exactly a^d. The former
        # dt_d / dt_0 gave a^d · mean_{t' > d} Θ' / mean_{all t'} Θ' instead, which is biased here
        # because Θ' grows with t' (H~ approaches the threshold).
        assert m[names.gradflow(None, d)] == pytest.approx(a ** d, rel=1e-5)
        biased = expected / (sum(tp) * c / 3)
        assert d == 0 or abs(biased / a ** d - 1) > 1e-2
        assert m[names.gradflow_zero_layers(d)] == 0
    assert m[names.GRADFLOW_ZERO_DIRECT] == 0
    for t in range(3):
        expected = sum(tp[s] * a ** (s - t) * c for s in range(t, 3)) / 3
        assert m[names.grad_step("lif", t + 1)] == pytest.approx(expected, rel=1e-5)
    # Membrane potentials match the hand computation too.
    for t, h in enumerate(potentials):
        assert m[names.membrane("mean", t + 1, "lif", "h_tilde")] == pytest.approx(h, rel=1e-6)


def test_per_sample_norms_do_not_depend_on_batch_size_or_grad_sample_cap():
    """Identical samples: the per-sample norm is the same for a batch of 1, of 4, or 4 capped at 3."""
    x1 = torch.full((3, 1, 1), 0.6)
    y1 = torch.zeros(1, dtype=torch.long)
    model = OneNeuron(True)
    one = collect(model, [(x1, y1)], render=False).metrics
    four = collect(model, [(x1.repeat(1, 4, 1), y1.repeat(4))], render=False).metrics
    capped = collect(model, [(x1.repeat(1, 4, 1), y1.repeat(4))], grad_samples=3, render=False).metrics
    for d in range(3):
        assert four[names.gradflow("lif", d)] == pytest.approx(one[names.gradflow("lif", d)], rel=1e-6)
        assert capped[names.gradflow("lif", d)] == pytest.approx(one[names.gradflow("lif", d)], rel=1e-6)
    off = collect(model, [(x1, y1)], grad_samples=0, render=False).metrics
    assert not any(k.startswith(("gradflow/", "grad/")) for k in off)


def test_custom_loss_fn_dict_and_scale():
    """A loss_fn returning {"loss": 2·CE(mean)} doubles every grad/{layer}/step_{t}."""
    import torch.nn.functional as F

    x = torch.full((3, 2, 1), 0.6)
    y = torch.zeros(2, dtype=torch.long)
    model = OneNeuron(True)
    base = collect(model, [(x, y)], render=False).metrics
    doubled = collect(model, [(x, y)], render=False,
                      loss_fn=lambda o, t: {"loss": 2 * F.cross_entropy(o.mean(0), t)}).metrics
    for t in (1, 2, 3):
        assert doubled[names.grad_step("lif", t)] == pytest.approx(2 * base[names.grad_step("lif", t)], rel=1e-6)


class TwoLayers(nn.Module):
    """The MPS neuron above beside a vanilla LIF that fires at every step.

    Second layer: X(t) = 3, τ = 2, hard reset to 0, detached: H(t) = 1.5 and S(t) = 1 at every t, so
    ∂V(t)/∂H(t) = 1 − S(t) = 0 and no gradient travels back in time (exactly 0 for d ≥ 1), while the
    direct gradient Θ'(0.5)·w/τ is not 0.
    """

    def __init__(self):
        from chorus.neurons import LIF

        super().__init__()
        self.lif = LIF(mps=True, alpha_init=0.5, detach_reset=True, mps_init="zero")  # as OneNeuron
        self.sat = LIF(mps=False, detach_reset=True)
        self.readout = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.readout.weight.copy_(torch.tensor([[2.0, 2.0], [0.0, 0.0]]))

    def forward(self, x):
        return self.readout(torch.cat([self.lif(x), self.sat(5 * x)], -1))


def test_gradient_flow_ratio_skips_a_layer_with_zero_gradient_back_in_time():
    x = torch.full((3, 1, 1), 0.6)
    m = collect(TwoLayers(), [(x, torch.zeros(1, dtype=torch.long))], render=False).metrics
    assert m[names.gradflow("sat", 0)] > 0
    for d in (1, 2):
        assert m[names.gradflow("sat", d)] == 0
        # The zero layer is left out (a geometric mean including it would be 0) and counted.
        assert m[names.gradflow(None, d)] == pytest.approx(0.75 ** d, rel=1e-5)
        assert m[names.gradflow_zero_layers(d)] == 1
    # d = 0: both layers' ratio is 1.
    assert m[names.gradflow(None, 0)] == pytest.approx(1.0)
    assert m[names.gradflow_zero_layers(0)] == 0
    assert m[names.GRADFLOW_ZERO_DIRECT] == 0
