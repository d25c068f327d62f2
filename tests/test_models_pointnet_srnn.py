"""Spiking PointNet and the SHD SRNN: sizes, the repeat over timesteps, invariances, recurrence."""
import pytest
import torch

import chorus.models as M
from chorus.models.neuron_config import NeuronConfig
from chorus.models.pointnet import PointMLP
from chorus.models.srnn import RecurrentLIFLayer


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_pointnet_param_count():
    # PointNet classification (Qi et al., CVPR 2017), 40 classes, both T-Nets; per-point layers are
    # 1x1 convs with bias + BN. Hand count, and the paper's "3.5M" (Table 6).
    lin = lambda a, b: a * b + b  # noqa: E731
    bn = lambda c: 2 * c  # noqa: E731
    def tnet(k):
        return (lin(k, 64) + bn(64) + lin(64, 128) + bn(128) + lin(128, 1024) + bn(1024)
                + lin(1024, 512) + bn(512) + lin(512, 256) + bn(256) + lin(256, k * k))
    trunk = lin(3, 64) + bn(64) + lin(64, 64) + bn(64) + lin(64, 128) + bn(128) + lin(128, 1024) + bn(1024)
    head = lin(1024, 512) + bn(512) + lin(512, 256) + bn(256) + lin(256, 40)
    total = tnet(3) + tnet(64) + trunk + head
    m = M.create("pointnet", 40, (1024, 3))
    assert n_params(m) == total
    assert round(total / 1e6, 1) == 3.5


def test_pointnet_repeats_over_settable_timesteps():
    m = M.create("pointnet", 10, (1024, 3), timesteps=2)
    x = torch.randn(3, 128, 3)
    assert m(x).shape == (2, 3, 10)
    m.timesteps = 5
    assert m(x).shape == (5, 3, 10)
    m.timesteps = 0
    with pytest.raises(ValueError, match="timesteps=0"):
        m(x)
    with pytest.raises(ValueError, match="timesteps=-1"):
        M.create("pointnet", 10, (1024, 3), timesteps=-1)
    m.timesteps = 2
    with pytest.raises(ValueError, match=r"\[B, N, 3\]"):
        m(torch.randn(2, 3, 128, 3))
    with pytest.raises(ValueError, match="in_shape"):
        M.create("pointnet", 10, (1024, 6))


def test_static_first_layer_sees_same_batchnorm_statistics():
    # Running the first linear-BN once on [B, N, 3] and expanding equals running it on T copies.
    mlp = PointMLP((3, 16), NeuronConfig())
    x = torch.randn(2, 50, 3)
    once = mlp.fcs[0](x).unsqueeze(0).expand(4, -1, -1, -1)
    copies = mlp.fcs[0](x.unsqueeze(0).expand(4, -1, -1, -1))
    torch.testing.assert_close(once, copies, rtol=1e-5, atol=1e-5)


def test_pointnet_is_invariant_to_point_order():
    m = M.create("pointnet", 10, (1024, 3), timesteps=3, neuron={"mps": True}).eval()
    x = torch.randn(2, 200, 3) * 2
    perm = torch.randperm(200)
    with torch.no_grad():
        torch.testing.assert_close(m(x[:, perm]), m(x), rtol=1e-5, atol=1e-5)


def test_srnn_param_count_and_hidden():
    # SHD: 700 inputs, two recurrent layers of 256 (feed-forward + BN, recurrent without bias), 20 classes.
    total = (700 * 256 + 2 * 256 + 256 * 256) + (256 * 256 + 2 * 256 + 256 * 256) + (256 * 20 + 20)
    assert n_params(M.create("srnn", 20, (700,))) == total
    no_bn = 700 * 64 + 64 + 64 * 64 + 64 * 20 + 20  # feed-forward bias instead of BN
    assert n_params(M.create("srnn", 20, (700,), hidden=64, bn=False)) == no_bn
    with pytest.raises(ValueError, match="hidden"):
        M.create("srnn", 20, (700,), hidden=())
    with pytest.raises(ValueError, match="in_shape"):
        M.create("srnn", 20, (2, 48, 48))


def test_recurrent_layer_without_recurrence_is_the_lif():
    """With R = 0 the stepped neuron gives exactly the spikes of the chorus LIF on BN(W x)."""
    layer = RecurrentLIFLayer(12, 16, NeuronConfig(mps=True, alpha_init=0.3, v_reset=None))
    with torch.no_grad():
        layer.rec.weight.zero_()
    x = torch.rand(20, 3, 12) * 3
    layer.lif.record_states = True
    got = layer(x)
    stepped_states = layer.lif.last_states
    want = layer.lif(layer.bn(layer.fc(x.flatten(0, 1))).unflatten(0, (20, 3)))
    assert got.sum() > 0 and torch.equal(got, want)
    # Diagnostics states of the stepped layer equal those the LIF records for the same input.
    torch.testing.assert_close(stepped_states.h_tilde, layer.lif.last_states.h_tilde, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(stepped_states.v_prev, layer.lif.last_states.v_prev, rtol=1e-6, atol=1e-6)
    (g_step,) = torch.autograd.grad((got * torch.arange(16.0)).sum(), layer.lif.beta)
    (g_lif,) = torch.autograd.grad((want * torch.arange(16.0)).sum(), layer.lif.beta)
    torch.testing.assert_close(g_step, g_lif, rtol=1e-4, atol=1e-6)


def test_recurrence_changes_the_output_and_learns():
    torch.manual_seed(0)
    m = M.create("srnn", 3, (700,), hidden=(24,), neuron={"mps": True})
    x = (torch.rand(30, 6, 700) < 0.1).float()
    y0 = m(x)
    with torch.no_grad():
        m.layers[0].rec.weight.fill_(0.0)
    assert not torch.equal(y0, m(x))
    target = torch.arange(6) % 3
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(m(x).mean(0), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    assert m.layers[0].rec.weight.abs().sum() > 0


def test_recurrent_layer_keeps_the_membrane_in_fp32_under_autocast():
    layer = RecurrentLIFLayer(12, 16, NeuronConfig(mps=True))
    with torch.no_grad():
        layer.rec.weight.zero_()
        layer.bn.weight.fill_(3.0)  # strong enough currents that the layer fires
    x = torch.rand(10, 3, 12) * 3
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = layer(x)
        current = layer.bn(layer.fc(x.flatten(0, 1))).unflatten(0, (10, 3))
        want = layer.lif(current)  # the LIF runs its membrane in fp32 from the bf16 current
    assert got.dtype == torch.bfloat16 and got.sum() > 0
    assert torch.equal(got, want)
    layer.to(torch.bfloat16)  # a model cast as a whole (DeepSpeed bf16) still runs
    assert layer(x.bfloat16()).dtype == torch.bfloat16


@pytest.mark.parametrize("v_init", ["zero", "uniform"])
def test_recurrent_layer_output_is_its_fixed_point(v_init):
    """With recurrence on, the output S satisfies S = LIF(BN(W x) + R·S(t−1)) with the same V(0)."""
    layer = RecurrentLIFLayer(12, 16, NeuronConfig(mps=True, alpha_init=0.3, v_init=v_init))
    with torch.no_grad():
        layer.rec.weight.normal_(0, 0.5)
        layer.bn.weight.fill_(2.0)
    x = torch.rand(15, 3, 12) * 3
    torch.manual_seed(5)
    layer.lif.record_states = True
    out = layer(x)
    assert layer.lif.last_states is not None and layer.lif.last_states.h_tilde.shape == (15, 3, 16)
    with torch.no_grad():
        current = layer.bn(layer.fc(x.flatten(0, 1))).unflatten(0, (15, 3))
        shifted = torch.cat([torch.zeros_like(out[:1]), out[:-1]])
        torch.manual_seed(5)
        want = layer.lif(current + layer.rec(shifted))
    assert 0 < out.mean() < 1 and torch.equal(out, want)


def test_recurrent_layer_gradient_equals_plain_stepping():
    """The stepped output keeps the exact BPTT gradient of the plain stepped recurrence."""
    from chorus.models.srnn import lif_step

    layer = RecurrentLIFLayer(12, 16, NeuronConfig(mps=True, alpha_init=0.3))
    with torch.no_grad():
        layer.rec.weight.normal_(0, 0.5)
        layer.bn.weight.fill_(2.0)
    x = torch.rand(15, 3, 12) * 3
    w = torch.randn(15, 3, 16)
    params = [layer.fc.weight, layer.bn.weight, layer.rec.weight, layer.lif.beta]
    got = torch.autograd.grad((layer(x) * w).sum(), params)

    current = layer.bn(layer.fc(x.flatten(0, 1))).unflatten(0, (15, 3))
    v, s = torch.zeros(3, 16), torch.zeros(3, 16)
    h = None  # mps_init "first" (the default): no smoothed potential before the first step, H~(1) = H(1)
    alpha = torch.sigmoid(layer.lif.beta)
    out = []
    for t in range(15):
        s, v, h = lif_step(layer.lif, current[t] + layer.rec(s), v, h, alpha)
        out.append(s)
    want = torch.autograd.grad((torch.stack(out) * w).sum(), params)
    for g, e in zip(got, want):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)
