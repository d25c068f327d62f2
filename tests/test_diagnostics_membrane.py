"""Membrane statistics and per-timestep accuracy against independent references.

The statistics ``collect`` reports for a two-layer network of fused-backend LIF layers (one with MPS,
one vanilla with the soft reset) must equal those computed with numpy and scipy from the potentials
of the plain per-timestep reference neuron (``chorus.neurons.lif_reference``) run on the same inputs.
"""
import numpy as np
import pytest
import torch
from scipy.stats import wasserstein_distance
from torch import nn

from chorus.diagnostics import collect, names, wasserstein1
from chorus.diagnostics.accuracy import per_timestep_accuracy
from chorus.neurons import LIF, lif_reference


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(5, 6)
        self.lif1 = LIF(mps=True, alpha_init=0.3)
        self.fc2 = nn.Linear(6, 4)
        self.lif2 = LIF(v_reset=None, tau=1.5)
        self.fc3 = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc3(self.lif2(self.fc2(self.lif1(self.fc1(x)))))


def reference_potentials(model, xs):
    """V(t−1) and H~(t) of both layers from the plain reference neuron, stacked over batches."""
    out = {("lif1", "v_prev"): [], ("lif1", "h_tilde"): [], ("lif2", "v_prev"): [], ("lif2", "h_tilde"): []}
    with torch.no_grad():
        for x in xs:
            s1, h1, v1 = lif_reference(model.fc1(x), model.lif1.alpha, model.lif1.p)
            s2, h2, v2 = lif_reference(model.fc2(s1), model.lif2.alpha, model.lif2.p)
            for layer, h, v in (("lif1", h1, v1), ("lif2", h2, v2)):
                out[layer, "v_prev"].append(v.reshape(v.shape[0], -1))
                out[layer, "h_tilde"].append(h.reshape(h.shape[0], -1))
    return {k: torch.cat(v, 1).double().numpy() for k, v in out.items()}


def test_membrane_statistics_equal_reference_neuron():
    model = TwoLayer()
    xs = [torch.randn(4, 8, 5) * 2, torch.randn(4, 8, 5) * 2]
    batches = [(x, torch.randint(0, 3, (8,))) for x in xs]
    m = collect(model, batches, max_values=10_000, render=False).metrics
    ref = reference_potentials(model, xs)
    for (layer, kind), vals in ref.items():
        T = vals.shape[0]
        w1s = []
        for i in range(T):
            t = i + 1
            assert m[names.membrane("mean", t, layer, kind)] == pytest.approx(vals[i].mean(), abs=1e-6)
            assert m[names.membrane("std", t, layer, kind)] == pytest.approx(vals[i].std(ddof=0), abs=1e-6)
            if i + 1 < T:
                assert m[names.membrane("dmean", t, layer, kind)] == pytest.approx(
                    abs(vals[i + 1].mean() - vals[i].mean()), abs=1e-6)
                assert m[names.membrane("dstd", t, layer, kind)] == pytest.approx(
                    abs(vals[i + 1].std() - vals[i].std()), abs=1e-6)
                w1 = wasserstein_distance(vals[i], vals[i + 1])
                assert m[names.membrane("w1", t, layer, kind)] == pytest.approx(w1, abs=1e-6)
                w1s.append(w1)
        assert m[names.membrane_w1_avg(layer, kind)] == pytest.approx(np.mean(w1s), abs=1e-6)
    # V(0) = V_r = 0: the first subnetwork starts from the same state everywhere.
    assert m[names.membrane("std", 1, "lif1")] == 0.0
    assert m[names.alpha("lif1")] == pytest.approx(0.3)
    assert names.alpha("lif2") not in m


def test_subsampled_wasserstein_uses_the_same_positions_at_every_timestep():
    """With a subsample cap below the layer size the W1 is estimated from a fixed subsample: for a
    shift by a constant c between timesteps it is still exactly |c|."""
    class Shift(nn.Module):
        def __init__(self):
            super().__init__()
            self.lif = LIF(tau=1.0, v_threshold=100.0, decay_input=False)
            self.fc = nn.Linear(64, 2)

        def forward(self, x):
            return self.fc(self.lif(x))

    x = torch.randn(1, 16, 64).repeat(3, 1, 1)  # τ = 1: H(t) = X(t), V(t−1) = X(t−1) (no spikes)
    x[1] += 0.5
    x[2] += 1.5
    m = collect(Shift(), [(x, torch.zeros(16, dtype=torch.long))], max_values=100, render=False).metrics
    assert m[names.membrane("w1", 1, "lif", "h_tilde")] == pytest.approx(0.5, abs=1e-5)
    assert m[names.membrane("w1", 2, "lif", "h_tilde")] == pytest.approx(1.0, abs=1e-5)


def test_wasserstein1_matches_scipy():
    a, b = torch.randn(500), torch.rand(500) * 3
    assert wasserstein1(a, b) == pytest.approx(wasserstein_distance(a.numpy(), b.numpy()), rel=1e-9)


def test_per_timestep_and_anytime_accuracy_by_hand():
    """T = 3, B = 2, labels (0, 1). Sample 0: o_1 = (1, 0), o_2 = (0, 3), o_3 = (2, 0): steps right,
    wrong, right; prefix means (1, 0), (0.5, 1.5), (1, 1) → argmax 0, 1, 0 (ties take the first): right,
    wrong, right. Sample 1: o_t = (0, 1), (1, 0), (1, 0): steps right, wrong, wrong; prefix means (0, 1),
    (0.5, 0.5) → 0, (2/3, 1/3) → 0: right, wrong, wrong."""
    logits = torch.tensor([[[1.0, 0.0], [0.0, 1.0]],
                           [[0.0, 3.0], [1.0, 0.0]],
                           [[2.0, 0.0], [1.0, 0.0]]])
    m = per_timestep_accuracy(logits, torch.tensor([0, 1]))
    assert [m[names.acc_step(t)] for t in (1, 2, 3)] == [1.0, 0.0, 0.5]
    assert [m[names.acc_first(k)] for k in (1, 2, 3)] == [1.0, 0.0, 0.5]
    assert m[names.ACC] == 0.5
