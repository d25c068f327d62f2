"""The SRNN's recurrent layer runs its neuron once per timestep (no second whole-sequence pass), its
output and recorded states equal an independent reference, and its LIF is never called."""
import pytest
import torch

from chorus.models.neuron_config import NeuronConfig
from chorus.models.srnn import RecurrentLIFLayer
from chorus.neurons import lif_reference

CONFIGS = [
    dict(mps=True, alpha_init=0.3),
    dict(mps=True, alpha_init=0.7, v_reset=None),
    dict(mps=False),
    dict(mps=False, decay_input=False, tau=3.0),
    dict(mps=True, alpha_init=0.4, v_init="uniform"),
]


def reference_fixed_point(layer, x, v0):
    """S = LIF(I + R·S(t−1)) by iterating the whole-sequence reference neuron T times: iteration k fixes
    timesteps 1..k exactly (causality), so after T iterations S is the recurrence's output."""
    with torch.no_grad():
        T = x.shape[0]
        current = layer.bn(layer.fc(x.flatten(0, 1))).unflatten(0, x.shape[:2])
        alpha = torch.sigmoid(layer.lif.beta) if layer.lif.beta is not None else None
        s = torch.zeros_like(current)
        for _ in range(T):
            shifted = torch.cat([torch.zeros_like(s[:1]), s[:-1]])
            s, hs, vp = lif_reference(current + layer.rec(shifted), alpha, layer.lif.p, v0)
    return s, hs, vp


@pytest.mark.parametrize("cfg", CONFIGS)
def test_recurrent_layer_equals_reference_and_records_loop_states(cfg):
    torch.manual_seed(0)
    layer = RecurrentLIFLayer(12, 16, NeuronConfig(**cfg)).eval()
    with torch.no_grad():
        layer.rec.weight.normal_(0, 0.6)
        layer.bn.weight.fill_(2.0)
    x = torch.rand(15, 3, 12) * 3
    calls = []
    layer.lif.register_forward_hook(lambda *a: calls.append(1))
    layer.lif.record_states = True
    torch.manual_seed(7)
    out = layer(x)
    assert calls == []  # the neuron is stepped once, its whole-sequence LIF is never run a second time
    torch.manual_seed(7)
    v0 = torch.rand(3, 16) * layer.lif.v_init_scale if cfg.get("v_init") == "uniform" else None
    want_s, want_h, want_v = reference_fixed_point(layer, x, v0)
    assert 0 < out.mean() < 1
    assert torch.equal(out, want_s)
    st = layer.lif.last_states
    # (the reference applies R to all timesteps in one matmul: same values up to float rounding)
    torch.testing.assert_close(st.h_tilde, want_h, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(st.v_prev, want_v, rtol=1e-6, atol=1e-6)
    assert not st.h_tilde.requires_grad and not st.v_prev.requires_grad
