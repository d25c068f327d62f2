"""The Recorder keeps layer inputs X only for the gradient pass, and uses the models' spiking_layers."""
import pytest
import torch
from torch import nn

import chorus.models as M
from chorus.diagnostics import capture
from chorus.models import introspect
from chorus.neurons import LIF


def test_capture_uses_the_models_spiking_layers():
    assert capture.spiking_layers is introspect.spiking_layers


@pytest.mark.parametrize("build, fin", [
    (lambda: nn.Sequential(nn.Linear(3, 4), LIF(), nn.Linear(4, 2), LIF()), 3),
    (lambda: M.create("srnn", 5, (6,), hidden=(4,)), 6),   # a stepped LIF reporting through step_tap
])
def test_inputs_are_kept_only_when_grad_is_enabled(build, fin):
    torch.manual_seed(0)
    model = build().eval()
    x = torch.rand(3, 2, fin)
    chosen = capture.resolve_layers(model, None)
    with capture.Recorder(model, chosen) as rec:
        with torch.no_grad():
            model(x)
        records, _ = rec.take()
        assert set(records) == {n for n, _ in chosen}
        # No-grad measure pass: nothing of X is held (by hand: the empty list), states still recorded.
        assert all(r.x_parts == [] and r.spikes.shape[0] == 3 for r in records.values())
        model(x)
        records, _ = rec.take()
        assert all(len(r.x_parts) > 0 and all(p.requires_grad for p in r.x_parts) for r in records.values())
