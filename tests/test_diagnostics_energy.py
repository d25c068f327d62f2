"""Firing rates, synaptic operations and energy of tiny networks with known weights, against values
worked out by hand from docs/method.md's LIF equations (τ = 2, V_th = 1, hard reset to 0, decay_input)::

    H(t) = V(t−1) + (X(t) − V(t−1)) / 2,   S(t) = [H(t) ≥ 1],   V(t) = H(t)·(1 − S(t))

and the energy model of the issue: 0.9 pJ per accumulate, 4.6 pJ per multiply-accumulate, the first
layer counted as dense MACs.
"""
import pytest
import torch
from torch import nn

from chorus.diagnostics import collect, names
from chorus.neurons import LIF


class MLP(nn.Module):
    """fc1 (3→2) → LIF → fc2 (2→3) → LIF → fc3 (3→2), no biases, on [T, B, 3]."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 2, bias=False)
        self.lif1 = LIF()
        self.fc2 = nn.Linear(2, 3, bias=False)
        self.lif2 = LIF()
        self.fc3 = nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]))
            self.fc2.weight.copy_(torch.tensor([[2.0, 0.0], [0.5, 4.0], [1.4, 0.0]]))
            self.fc3.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))

    def forward(self, x):
        return self.fc3(self.lif2(self.fc2(self.lif1(self.fc1(x)))))


def mlp_batch(B=2):
    # fc1 gives X = (2, 1) at both timesteps for every sample.
    x = torch.tensor([2.0, 0.5, 0.5]).expand(2, B, 3).clone()
    return x, torch.zeros(B, dtype=torch.long)


def test_mlp_firing_rates_sops_and_energy_by_hand():
    """Layer 1: X = (2, 1). Neuron a: H(1) = 1 → spike, V = 0; H(2) = 1 → spike. Neuron b: H(1) = 0.5,
    V = 0.5; H(2) = 0.75: silent. Spikes (1, 0) at t = 1 and 2 → firing 1/2, 1/2.
    Layer 2: X = W2·S1 = (2, 0.5, 1.4) at both steps. Neuron 0 fires at t = 1, 2; neuron 1:
    H = 0.25, then 0.375: silent; neuron 2: H(1) = 0.7, V = 0.7, H(2) = 0.7 + 0.35 = 1.05: fires at t = 2.
    Firing 1/3 at t = 1, 2/3 at t = 2. All neurons: 5 spikes in 10 slots = 0.5.
    Per sample: fc1 dense MACs 2 steps × 2 outputs × 3 inputs = 12; fc2 ACs 2 spikes × 3 outputs = 6;
    fc3 ACs 3 spikes × 2 outputs = 6. Energy 12·4.6 + 12·0.9 = 66.0 pJ. As an ANN (one step, all
    dense): (6 + 6 + 6)·4.6 = 82.8 pJ.
    """
    d = collect(MLP(), [mlp_batch(2), mlp_batch(3)], render=False)
    m = d.metrics
    assert d.num_samples == 5 and d.timesteps == 2
    assert m[names.firing("lif1", 1)] == pytest.approx(0.5)
    assert m[names.firing("lif1", 2)] == pytest.approx(0.5)
    assert m[names.firing("lif2", 1)] == pytest.approx(1 / 3)
    assert m[names.firing("lif2", 2)] == pytest.approx(2 / 3)
    assert m[names.firing("lif2")] == pytest.approx(0.5)
    assert m[names.firing(None)] == pytest.approx(0.5)
    assert m[names.sop("fc1")] == pytest.approx(12)
    assert m[names.sop("fc2")] == pytest.approx(6)
    assert m[names.sop("fc3")] == pytest.approx(6)
    assert m[names.ENERGY_MAC] == pytest.approx(12)
    assert m[names.ENERGY_AC] == pytest.approx(12)
    assert m[names.ENERGY_PJ] == pytest.approx(66.0)
    assert m[names.ENERGY_ANN_PJ] == pytest.approx(82.8)
    assert m[names.ENERGY_RATIO] == pytest.approx(66.0 / 82.8)


class ConvNet(nn.Module):
    """conv1 1×1 (1→1, weight 1) → LIF → conv2 3×3 padding 1 (1→2) on [T=1, B, 1, 3, 3]."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 1, 1, bias=False)
        self.lif = LIF()
        self.conv2 = nn.Conv2d(1, 2, 3, padding=1)
        with torch.no_grad():
            self.conv1.weight.fill_(1.0)

    def forward(self, x):
        T = x.shape[0]
        y = self.lif(self.conv1(x.flatten(0, 1)).unflatten(0, (T, -1)))
        return self.conv2(y.flatten(0, 1)).unflatten(0, (T, -1)).flatten(2)[..., :2]


def test_conv_sops_count_receptive_fields_by_hand():
    """conv1 passes the input through; input 2 at (0,0) corner, (0,1) edge and (1,1) centre gives
    H = 1 → three spikes. With a 3×3 kernel and padding 1 on a 3×3 map, a corner spike reaches 4
    outputs, an edge spike 6, the centre 9: (4 + 6 + 9) × 2 output channels = 38 ACs. conv1 is the
    first layer: 9 outputs × fan-in 1 = 9 dense MACs. Energy 9·4.6 + 38·0.9 = 75.6 pJ.
    Firing rate 3/9. As an ANN: 9·4.6 + 18 outputs × 9 fan-in × 4.6 = 786.6 pJ.
    """
    x = torch.zeros(1, 2, 1, 3, 3)
    x[..., 0, 0] = x[..., 0, 1] = x[..., 1, 1] = 2.0
    d = collect(ConvNet(), [(x, torch.zeros(2, dtype=torch.long))], render=False)
    m = d.metrics
    assert m[names.firing("lif", 1)] == pytest.approx(3 / 9)
    assert m[names.sop("conv1")] == pytest.approx(9)
    assert m[names.sop("conv2")] == pytest.approx(38)
    assert m[names.ENERGY_PJ] == pytest.approx(75.6)
    assert m[names.ENERGY_ANN_PJ] == pytest.approx(9 * 4.6 + 18 * 9 * 4.6)


def test_pooled_and_summed_spikes_count_by_magnitude():
    """Average pooling of spikes feeds fc a non-binary input; it is counted as the spike rate times the
    connections (the usual SOP count). fc0 (identity, 4 × 4 = 16 dense MACs, first layer) gives
    X = (2, 0, 2, 2): spikes (1, 0, 1, 1), pooled in pairs → (0.5, 1): (0.5 + 1) × 3 outputs = 4.5 ACs.
    fc2 gets the sum of the spikes with themselves, (2, 0, 2, 2): 6 × 2 outputs = 12 ACs."""
    class Pooled(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc0 = nn.Linear(4, 4, bias=False)
            self.lif = LIF()
            self.fc = nn.Linear(2, 3)
            self.fc2 = nn.Linear(4, 2)
            with torch.no_grad():
                self.fc0.weight.copy_(torch.eye(4))

        def forward(self, x):
            s = self.lif(self.fc0(x))
            return self.fc(nn.functional.avg_pool1d(s, 2)) + self.fc2(s + s)[..., :1]

    x = torch.tensor([2.0, 0.0, 2.0, 2.0]).view(1, 1, 4)
    m = collect(Pooled(), [(x, torch.zeros(1, dtype=torch.long))], render=False).metrics
    assert m[names.sop("fc0")] == pytest.approx(16)
    assert m[names.sop("fc")] == pytest.approx(4.5)
    assert m[names.sop("fc2")] == pytest.approx(12)
    assert m[names.ENERGY_MAC] == pytest.approx(16)
    assert m[names.ENERGY_AC] == pytest.approx(16.5)


def test_grouped_strided_conv_events_equal_a_brute_force_count():
    """For random spikes into a grouped, strided, dilated conv the AC count equals a direct count:
    for every output position and group, the spikes inside its receptive field (zero padding outside
    the map) times the output channels of that group."""
    from chorus.diagnostics.energy import event_ops

    conv = nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2)
    x = (torch.rand(3, 4, 7, 7) < 0.3).float()
    out = conv(x)
    Ho, Wo = out.shape[-2:]
    count = 0
    for n in range(3):
        for g in range(2):
            for i in range(Ho):
                for j in range(Wo):
                    for ki in range(3):
                        for kj in range(3):
                            r, c = i * 2 - 2 + ki * 2, j * 2 - 2 + kj * 2
                            if 0 <= r < 7 and 0 <= c < 7:
                                count += int(x[n, 2 * g:2 * g + 2, r, c].sum()) * 3
    assert event_ops(conv, x) == count


@pytest.mark.parametrize("dtype", [torch.float32, torch.bool])
def test_firing_counts_above_2_to_the_24_are_exact(dtype):
    """2^24 + 1 spikes in one batch and timestep (float32 cannot hold that count) among 2^25 + 2
    neurons: the count is 2^24 + 1 exactly and the rate (2^24 + 1)/(2^25 + 2) = 1/2."""
    from chorus.diagnostics.energy import FiringCounter

    n = 2 ** 25 + 2
    s = torch.zeros(1, n, dtype=dtype)
    s[0, ::2] = 1
    counter = FiringCounter()
    counter.update("stem", s)
    assert counter.spikes["stem"][0].item() == 2 ** 24 + 1
    m = counter.metrics()
    assert m[names.firing("stem", 1)] == 0.5
    assert m[names.firing(None)] == 0.5
