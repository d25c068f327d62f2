"""``collect`` as the training loop sees it: it leaves the model as it found it, names bad input, and
produces every figure and table (docs/architecture.md, "Diagnostics")."""
import pytest
import torch
from torch import nn

from chorus.diagnostics import collect, names
from chorus.neurons import LIF

PNG = b"\x89PNG\r\n\x1a\n"


class Small(nn.Module):
    def __init__(self, mps=True):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.lif1 = LIF(mps=mps, alpha_init=0.4)
        self.fc = nn.Linear(4 * 6 * 6, 8)
        self.lif2 = LIF(mps=mps)
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        T = x.shape[0]
        y = self.bn(self.conv(x.flatten(0, 1))).unflatten(0, (T, -1))
        return self.out(self.lif2(self.fc(self.lif1(y).flatten(2))))


def batches(n=2, B=4, T=3):
    return [(torch.rand(T, B, 2, 6, 6) * 4, torch.randint(0, 3, (B,))) for _ in range(n)]


def test_collect_leaves_model_rng_and_gradients_untouched():
    model = Small().train()
    bs = batches()
    rng = torch.get_rng_state()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    d = collect(model, bs)
    assert model.training
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN stats untouched
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
    assert model.lif1.record_states is False and model.lif1.last_states is None
    assert d.num_samples == 8 and d.timesteps == 3 and d.layers == ["lif1", "lif2"]


def test_collect_produces_every_figure_and_table():
    d = collect(Small(), batches())
    expected = {"accuracy.png", "membrane_stats.png", "membrane_histograms.png", "gradient_flow.png",
                "firing_rates.png"}
    assert set(d.figures) == expected
    for name, png in d.figures.items():
        assert png.startswith(PNG) and len(png) > 2000, name
    assert {"accuracy", "membrane", "membrane_layers", "energy", "alpha", "gradient_flow", "firing"} <= set(d.tables)
    assert "| 1 |" in d.tables["accuracy"]
    assert set(d.samples) == {"lif1", "lif2"} and d.samples["lif1"]["v_prev"].shape[0] == 3
    assert not collect(Small(), batches(1), render=False).figures


def test_layers_restrict_membrane_and_gradient_but_not_energy():
    d = collect(Small(), batches(1), layers=["lif2"], render=False)
    assert names.membrane("mean", 1, "lif2") in d.metrics
    assert not any("/lif1" in k for k in d.metrics if k.startswith(("membrane/", "gradflow/", "grad/")))
    assert names.firing("lif1", 1) in d.metrics and names.sop("conv") in d.metrics


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="'nope'.*lif1, lif2"):
        collect(Small(), batches(1), layers=["nope"])
    with pytest.raises(ValueError, match="at least one"):
        collect(Small(), [])
    with pytest.raises(ValueError, match="no chorus LIF layers"):
        collect(nn.Linear(2, 2), batches(1))
    with pytest.raises(ValueError, match=r"\[T, B, classes\]"):
        collect(nn.Sequential(LIF(), nn.Flatten(0, 1)), [(torch.rand(2, 3, 4), torch.zeros(3, dtype=torch.long))])
    with pytest.raises(ValueError, match="batch 0 must be an \\(x, y\\) pair"):
        collect(Small(), [torch.rand(3, 4, 2, 6, 6)])


def test_registered_model_runs():
    models = pytest.importorskip("chorus.models")
    model = models.create("vgg_small", 4, (2, 16, 16), neuron={"mps": True})
    bs = [(torch.rand(2, 3, 2, 16, 16), torch.randint(0, 4, (3,)))]
    d = collect(model, bs, render=False, grad_samples=2)
    lifs = [n for n, _ in models.spiking_layers(model)]
    assert d.layers == lifs
    for n in lifs:
        assert names.membrane("std", 2, n) in d.metrics and names.alpha(n) in d.metrics
        assert names.gradflow(n, 1) in d.metrics
    assert d.metrics[names.ENERGY_PJ] > 0


def test_alpha_trajectory_figure_from_the_loop_history():
    from chorus.diagnostics.collect import alpha_history

    history = [{"epoch": 1, "mps/alpha/lif1": 0.41, "val/acc": 0.3}, {"epoch": 2, "mps/alpha/lif1": 0.42}]
    d = collect(Small(), batches(1), history=history)
    assert d.figures["alpha_trajectory.png"].startswith(PNG)
    traj = alpha_history(history, d.metrics)
    assert traj["lif1"] == [(1.0, 0.41), (2.0, 0.42)]          # the loop's history includes this epoch
    assert traj["lif2"] == [(3.0, pytest.approx(0.5))]          # a layer it does not mention: current α
    assert "alpha_trajectory.png" not in collect(Small(mps=False), batches(1), history=[]).figures
