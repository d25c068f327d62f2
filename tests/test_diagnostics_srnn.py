"""Gradient flow of the SRNN's recurrent layers: ``collect`` measures the total ∂L/∂X(t), through the
direct path and the recurrent one (s(t) → R → X(t+1)), checked against a hand-stepped recurrence."""
import pytest
import torch
import torch.nn.functional as F

import chorus.models as M
from chorus.diagnostics import collect, names
from chorus.neurons.surrogate import spike


def hand_step(x, v, hs_prev, alpha, p):
    """docs/method.md's equations for decay_input and the hard reset to V_r = 0, written out (mps_init
    "first": ``hs_prev`` is None at the first step, H~(1) = H(1))."""
    h = v + (x - v) / p.tau
    hs = alpha * hs_prev + (1 - alpha) * h if p.mps and hs_prev is not None else h
    s = spike(hs - p.v_threshold, p.surrogate, p.surrogate_alpha)
    return s, hs * (1 - s), hs


def hand_forward(m, x, es):
    """The SRNN stepped by hand, with ``es[l][t]`` added to layer l's input X(t)."""
    T, B = x.shape[:2]
    y = x
    for l, layer in enumerate(m.layers):
        cur = layer.bn(layer.fc(y.flatten(0, 1))).unflatten(0, (T, B))
        alpha = torch.sigmoid(layer.lif.beta) if layer.lif.beta is not None else None
        n = cur.shape[-1]
        v, h, s = torch.zeros(B, n), None, torch.zeros(B, n)
        outs = []
        for t in range(T):
            s, v, h = hand_step(cur[t] + layer.rec(s) + es[l][t], v, h, alpha, layer.lif.p)
            outs.append(s)
        y = torch.stack(outs)
    return m.readout(y)


@pytest.mark.parametrize("neuron", [{"mps": False}, {"mps": True, "alpha_init": 0.4}])
def test_srnn_gradient_flow_includes_the_recurrent_path(neuron):
    torch.manual_seed(0)
    m = M.create("srnn", 3, (20,), hidden=(16, 12), neuron=neuron).eval()
    with torch.no_grad():
        for layer in m.layers:
            layer.rec.weight.normal_(0, 1.0)
    T, B = 6, 2
    x = (torch.rand(T, B, 20) < 0.5).float() * 2
    y = torch.tensor([0, 2])
    got = collect(m, [(x, y)], render=False, grad_samples=B).metrics

    sizes = [layer.rec.weight.shape[0] for layer in m.layers]

    def grads(loss_of):
        es = [[torch.zeros(B, n, requires_grad=True) for _ in range(T)] for n in sizes]
        flat = [e for row in es for e in row]
        gs = torch.autograd.grad(loss_of(hand_forward(m, x, es)), flat)
        return [gs[l * T:(l + 1) * T] for l in range(len(sizes))]  # layer → [dL/dX(t)] per t

    flow = {l: [0.0] * T for l in range(len(sizes))}
    count = [0] * T
    for tp in range(T):  # loss of subnetwork tp alone
        g = grads(lambda o: F.cross_entropy(o[tp], y, reduction="sum"))
        for t in range(tp + 1):
            count[tp - t] += B
            for l in flow:
                flow[l][tp - t] += float(g[l][t].norm(dim=1).sum())
    g_train = grads(lambda o: F.cross_entropy(o.mean(0), y, reduction="sum"))
    recurrent_part = 0.0
    for l in flow:
        name = f"layers.{l}.lif"
        for d in range(T):
            assert got[names.gradflow(name, d)] == pytest.approx(flow[l][d] / count[d], rel=1e-4, abs=1e-9)
        for t in range(T):
            want = float(g_train[l][t].norm(dim=1).mean())
            assert got[names.grad_step(name, t + 1)] == pytest.approx(want, rel=1e-4, abs=1e-9)
        recurrent_part += flow[l][T - 1]
    assert recurrent_part > 0  # gradient does travel back in time, so the check is not vacuous


def test_srnn_diagnostics_record_states_and_firing():
    torch.manual_seed(1)
    m = M.create("srnn", 3, (20,), hidden=(16,)).eval()
    x = (torch.rand(5, 2, 20) < 0.5).float() * 2
    layer = m.layers[0]
    d = collect(m, [(x, torch.tensor([0, 1]))], render=False, grad_samples=1)
    assert d.layers == ["layers.0.lif"] and d.timesteps == 5
    # hooks and taps are gone afterwards and the neuron's flags are restored
    assert layer.step_tap is None and layer.lif.record_states is False and layer.lif.last_states is None
    with torch.no_grad():
        spikes = m.layers(x)
    assert 0 < float(spikes.mean()) < 1
    assert d.metrics[names.firing("layers.0.lif")] == pytest.approx(float(spikes.mean()))
    for t in range(5):
        assert d.metrics[names.firing("layers.0.lif", t + 1)] == pytest.approx(float(spikes[t].mean()))
    assert names.membrane("mean", 1, "layers.0.lif") in d.metrics
