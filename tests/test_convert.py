"""``chorus.convert`` against SpikingJelly models built from SpikingJelly layers (issue 4).

With MPS off a converted model must compute exactly what the SpikingJelly original computed (docs/method.md:
the chorus LIF with MPS off is SpikingJelly's LIFNode); with MPS on it must train.
"""
import pytest
import torch
from torch import nn

import chorus
import chorus.models as M
from chorus.neurons import LIF

sj = pytest.importorskip("spikingjelly.activation_based")
from spikingjelly.activation_based import functional, layer, neuron, surrogate  # noqa: E402


def sj_vgg(width=8, classes=4):
    """A small VGG-style SNN: conv-BN-LIF blocks with pooling, one IF layer, multi-step."""
    return nn.Sequential(
        layer.Conv2d(2, width, 3, padding=1, bias=False, step_mode="m"), layer.BatchNorm2d(width, step_mode="m"),
        neuron.LIFNode(tau=2.0, detach_reset=True, step_mode="m"), layer.AvgPool2d(2, step_mode="m"),
        layer.Conv2d(width, 2 * width, 3, padding=1, bias=False, step_mode="m"),
        layer.BatchNorm2d(2 * width, step_mode="m"),
        neuron.LIFNode(tau=3.0, v_reset=None, surrogate_function=surrogate.ATan(), step_mode="m"),
        layer.AvgPool2d(2, step_mode="m"),
        layer.Conv2d(2 * width, 2 * width, 3, padding=1, bias=False, step_mode="m"),
        layer.BatchNorm2d(2 * width, step_mode="m"),
        neuron.IFNode(surrogate_function=surrogate.Rect(alpha=2.0), step_mode="m"),
        layer.Flatten(step_mode="m"), layer.Linear(2 * width * 4 * 4, classes, step_mode="m"),
    )


class SJSewBlock(nn.Module):
    """A SEW basic block (ADD connect) from SpikingJelly layers."""

    def __init__(self, c):
        super().__init__()
        self.conv1 = layer.SeqToANNContainer(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        self.sn1 = neuron.LIFNode(step_mode="m")
        self.conv2 = layer.SeqToANNContainer(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        self.sn2 = neuron.LIFNode(step_mode="m")

    def forward(self, x):
        return self.sn2(self.conv2(self.sn1(self.conv1(x)))) + x


def sj_sew(c=8, classes=4):
    return nn.Sequential(
        layer.Conv2d(2, c, 3, padding=1, bias=False, step_mode="m"), layer.BatchNorm2d(c, step_mode="m"),
        neuron.LIFNode(step_mode="m"), SJSewBlock(c), SJSewBlock(c),
        layer.AdaptiveAvgPool2d(1, step_mode="m"), layer.Flatten(step_mode="m"),
        layer.Linear(c, classes, step_mode="m"),
    )


def run_sj(model, x):
    functional.reset_net(model)
    return model(x)


@pytest.mark.parametrize("build", [sj_vgg, sj_sew])
def test_convert_mps_off_is_identical(build):
    peer = build()
    x = torch.rand(4, 3, 2, 16, 16) * 3
    conv = chorus.convert(peer, neuron={"mps": False})
    assert conv is not peer
    n_sj = sum(isinstance(m, (neuron.LIFNode, neuron.IFNode)) for m in peer.modules())
    assert len(M.spiking_layers(conv)) == n_sj and M.mps_layers(conv) == []
    assert not any(isinstance(m, neuron.BaseNode) for m in conv.modules())
    y_sj = run_sj(peer, x)
    y_ch = conv(x)
    assert torch.equal(y_sj, y_ch)
    # Gradients agree too (to fp32 rounding: the surrogate is evaluated in a different order).
    y_sj.square().sum().backward()
    y_ch.square().sum().backward()
    for (n, a), (_, b) in zip(peer.named_parameters(), conv.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5, msg=lambda m: f"{n}: {m}")


def test_convert_keeps_node_settings_and_overlays_neuron():
    conv = chorus.convert(sj_vgg(), neuron={"alpha_init": 0.25})
    lifs = [m for _, m in M.spiking_layers(conv)]
    assert all(isinstance(m, LIF) and m.mps for m in lifs)
    a, b, c = (m.p for m in lifs)
    assert (a.tau, a.v_reset, a.detach_reset, a.surrogate, a.surrogate_alpha) == (2.0, 0.0, True, "sigmoid", 4.0)
    assert (b.tau, b.soft_reset, b.surrogate, b.surrogate_alpha) == (3.0, True, "atan", 2.0)
    assert (c.tau, c.decay_input, c.surrogate, c.surrogate_alpha) == (M.IF_TAU, False, "rect", 0.5)
    assert abs(float(lifs[0].alpha.detach()) - 0.25) < 1e-6


def test_converted_model_trains_with_mps():
    torch.manual_seed(3)
    conv = chorus.convert(sj_sew(), neuron={"mps": True, "alpha_init": 0.5})
    y = torch.arange(8) % 4
    templates = torch.rand(4, 2, 16, 16)  # one input pattern per class, plus noise: a learnable task
    x = (templates[y] + 0.3 * torch.rand(4, 8, 2, 16, 16)) * 2
    opt = torch.optim.Adam(conv.parameters(), lr=0.02)
    betas0 = [lif.beta.detach().clone() for _, lif in M.mps_layers(conv)]
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(conv(x).mean(0), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    assert all(not torch.equal(b0, lif.beta) for b0, (_, lif) in zip(betas0, M.mps_layers(conv)))


def test_convert_errors_name_the_fault():
    single = nn.Sequential(layer.Linear(4, 4), neuron.LIFNode(step_mode="s"))
    with pytest.raises(ValueError, match=r"1 \(LIFNode\).*step_mode='s'"):
        chorus.convert(single)
    with pytest.raises(ValueError, match="no SpikingJelly LIFNode"):
        chorus.convert(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="ParametricLIFNode"):
        chorus.convert(nn.Sequential(neuron.ParametricLIFNode(step_mode="m")))
    with pytest.raises(ValueError, match="'tua'"):
        chorus.convert(sj_vgg(), neuron={"tua": 2.0})


@pytest.mark.parametrize("overlay", [None, {"surrogate": "atan"}])
def test_convert_refuses_non_spiking_surrogate(overlay):
    """SpikingJelly with surrogate(spiking=False) outputs sigmoid(α(H − V_th)), not spikes; a chorus LIF
    always spikes, so conversion must refuse, naming the module path and the setting."""
    peer = nn.Sequential(layer.Linear(4, 4, step_mode="m"),
                         nn.Sequential(neuron.LIFNode(surrogate_function=surrogate.Sigmoid(spiking=False),
                                                      step_mode="m")))
    x = torch.rand(3, 2, 4) * 3
    y = run_sj(peer, x)
    # SpikingJelly's own output is non-binary here: the node really is non-spiking.
    assert not torch.all((y == 0) | (y == 1))
    functional.reset_net(peer)
    with pytest.raises(ValueError, match=r"1\.0 \(LIFNode\).*Sigmoid\(spiking=False\)"):
        chorus.convert(peer, neuron=overlay)
    # A spiking=True node in the same place still converts.
    peer[1][0].surrogate_function.set_spiking_mode(True)
    assert isinstance(chorus.convert(peer, neuron=overlay)[1][0], LIF)
