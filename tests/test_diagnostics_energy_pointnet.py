"""Real-valued inputs of later synaptic layers are MACs, not spike events: Spiking PointNet's layers
after a T-Net transform (x @ trans) multiply real values, counted by hand here."""
import pytest
import torch
from torch import nn

import chorus.models as M
from chorus.diagnostics import collect, names
from chorus.neurons import LIF


def test_pointnet_real_valued_layers_count_as_macs_by_hand():
    torch.manual_seed(0)
    T, B, N = 2, 4, 64
    m = M.create("pointnet", 10, (N, 3), timesteps=T, neuron={"v_threshold": 0.5})
    x = torch.randn(B, N, 3)
    # Count by hand while the model runs: MACs = output elements x fan-in for the layers fed real values
    # (the cloud, the transformed cloud x @ trans, the transformed features h @ trans); ACs = input
    # spikes x out_features for the others (their inputs are 0/1, checked).
    real = {"input_tnet.points.fcs.0.fc", "mlp1.fcs.0.fc", "mlp2.fcs.0.fc"}
    mac = ac = 0.0
    seen = set()

    def hook(name):
        def fn(mod, args, out):
            nonlocal mac, ac
            seen.add(name)
            if name in real:
                mac += out.numel() * mod.in_features
            else:
                assert ((args[0] == 0) | (args[0] == 1)).all(), name
                ac += float(args[0].sum()) * mod.out_features
        return fn

    handles = [mod.register_forward_hook(hook(n)) for n, mod in m.named_modules() if isinstance(mod, nn.Linear)]
    m.eval()
    with torch.no_grad():
        m(x)
    for h in handles:
        h.remove()
    assert real <= seen
    # input T-Net's first layer runs once on [B·N, 3]; mlp1's on [T, B, N, 3]; mlp2's on [T, B, N, 64]
    assert mac / B == N * 3 * 64 + T * N * 3 * 64 + T * N * 64 * 128
    d = collect(m, [(x, torch.zeros(B, dtype=torch.long))], render=False, grad_samples=0).metrics
    assert d[names.ENERGY_MAC] == pytest.approx(mac / B)
    assert d[names.ENERGY_AC] == pytest.approx(ac / B, rel=1e-9)
    assert d[names.sop("mlp2.fcs.0.fc")] == pytest.approx(T * N * 64 * 128)


def test_later_layer_fed_negative_real_values_counts_as_macs():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 5)
            self.lif = LIF()
            self.b = nn.Linear(5, 3)
            self.c = nn.Linear(3, 2)

        def forward(self, x):
            s = self.lif(self.a(x))
            return self.c(self.b(s) - 10.0)  # c gets real, negative values

    torch.manual_seed(0)
    net = Net()
    x = torch.rand(3, 2, 4) * 4  # [T, B, 4]
    with torch.no_grad():
        spikes = net.lif(net.a(x))
    d = collect(net, [(x, torch.zeros(2, dtype=torch.long))], render=False, grad_samples=0).metrics
    # per sample: a dense (T·5·4), c dense (T·2·3); b accumulates one AC per (spike, output)
    assert d[names.ENERGY_MAC] == pytest.approx((3 * 5 * 4 + 3 * 2 * 3) * 2 / 2)
    assert d[names.ENERGY_AC] == pytest.approx(float(spikes.sum()) * 3 / 2)
