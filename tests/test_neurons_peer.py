"""Chorus LIF vs SpikingJelly's ``LIFNode(step_mode="m")`` (an independent implementation).

With MPS off the docs/method.md equations are SpikingJelly's, so spikes must be identical and input
gradients equal to fp32 rounding. Also: MPS on with α forced to 0 is exactly the vanilla LIF.
"""
import itertools

import pytest
import torch

from chorus.neurons import LIF

sj_neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
sj_surrogate = pytest.importorskip("spikingjelly.activation_based.surrogate")


def _sj_surrogate(name):
    return {"sigmoid": sj_surrogate.Sigmoid(alpha=4.0), "atan": sj_surrogate.ATan(alpha=2.0),
            "rect": sj_surrogate.Rect(alpha=1.0)}[name]


@pytest.mark.parametrize("v_reset,decay_input,detach_reset,surrogate", list(itertools.product(
    [0.0, None, -0.3], [True, False], [False, True], ["sigmoid", "atan", "rect"])))
def test_equals_spikingjelly(v_reset, decay_input, detach_reset, surrogate):
    ours = LIF(v_reset=v_reset, decay_input=decay_input, detach_reset=detach_reset, surrogate=surrogate)
    peer = sj_neuron.LIFNode(tau=2.0, v_reset=v_reset, decay_input=decay_input, detach_reset=detach_reset,
                             surrogate_function=_sj_surrogate(surrogate), step_mode="m")
    x = torch.randn(8, 4, 3, 7, 7) * 1.5 + 0.3
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    s1 = ours(x1)
    peer.reset()
    s2 = peer(x2)
    assert 0 < s2.sum() < s2.numel()
    assert torch.equal(s1, s2)
    g = torch.randn_like(x)
    (s1 * g).sum().backward()
    (s2 * g).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("v_reset", [0.0, None])
@pytest.mark.parametrize("surrogate", ["sigmoid", "rect"])
def test_mps_with_alpha_zero_is_vanilla(v_reset, surrogate):
    vanilla = LIF(v_reset=v_reset, surrogate=surrogate)
    smooth = LIF(v_reset=v_reset, surrogate=surrogate, mps=True)
    with torch.no_grad():
        smooth.beta.fill_(float("-inf"))
    assert float(smooth.alpha.detach()) == 0.0
    x = torch.randn(6, 5, 40) * 1.5
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    s1, s2 = vanilla(x1), smooth(x2)
    assert torch.equal(s1, s2)
    s1.sum().backward()
    s2.sum().backward()
    assert torch.equal(x1.grad, x2.grad)


def test_mps_changes_dynamics_and_alpha_gets_gradient():
    lif = LIF(mps=True, alpha_init=0.5)
    assert abs(float(lif.alpha) - 0.5) < 1e-7
    x = torch.randn(4, 8, 20) * 2
    s = lif(x)
    assert not torch.equal(s, LIF()(x))
    s.sum().backward()
    assert lif.beta.grad is not None and lif.beta.grad.abs() > 0
