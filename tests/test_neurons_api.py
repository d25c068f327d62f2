"""The LIF module's contract: shapes, no state between calls, states, autocast, and bad input."""
import pytest
import torch
from torch import nn

from chorus.neurons import LIF, lif_reference


def test_no_state_between_calls():
    lif = LIF(mps=True)
    x = torch.randn(4, 3, 10) * 2
    assert torch.equal(lif(x), lif(x))
    assert not list(lif.buffers())


def test_states_match_reference_potentials():
    lif = LIF(mps=True, alpha_init=0.3)
    x = torch.randn(5, 2, 9) * 1.5
    s, st = lif(x, return_states=True)
    s_ref, hs_ref, vp_ref = lif_reference(x, lif.alpha.detach(), lif.p)
    assert torch.equal(s, s_ref)
    assert torch.equal(st.h_tilde, hs_ref)
    assert torch.equal(st.v_prev, vp_ref)
    assert torch.equal(st.v_prev[0], torch.zeros_like(x[0]))  # V(0) = V_r


def test_record_states_keeps_detached_copy():
    lif = LIF()
    assert lif(torch.randn(3, 2, 4)) is not None and lif.last_states is None
    lif.record_states = True
    x = torch.randn(3, 2, 4, requires_grad=True)
    out = lif(x)
    assert isinstance(out, torch.Tensor)
    assert lif.last_states.h_tilde.shape == x.shape and not lif.last_states.h_tilde.requires_grad


def test_uniform_v_init_range_and_shape():
    lif = LIF(v_init="uniform", v_init_scale=0.5)
    x = torch.zeros(2, 64, 32)
    _, st = lif(x, return_states=True)
    v0 = st.v_prev[0]
    assert v0.min() >= 0 and v0.max() < 0.5 and v0.std() > 0.1
    assert not torch.equal(v0[0], v0[1])  # per sample, not shared


def test_autocast_bf16_keeps_membrane_in_fp32():
    torch.manual_seed(0)
    lin = nn.Linear(16, 32)
    lif = LIF(mps=True)
    x = torch.randn(4, 8, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = lin(x)
        assert y.dtype == torch.bfloat16
        s = lif(y)
    assert s.dtype == torch.bfloat16
    # the same bf16 currents integrated in fp32 outside autocast give the same spikes
    s_ref = lif(y.float())
    assert torch.equal(s.float(), s_ref)
    s.float().sum().backward()
    assert lif.beta.grad.dtype == torch.float32 and lin.weight.grad is not None


@pytest.mark.parametrize("kwargs,needle", [
    ({"alpha_init": 0.0, "mps": True}, "alpha_init"),
    ({"alpha_init": 1.0}, "alpha_init"),
    ({"alpha_init": -3}, "alpha_init"),
    ({"surrogate": "triangle"}, "surrogate"),
    ({"surrogate_alpha": -1.0}, "surrogate_alpha"),
    ({"tau": 0.5}, "tau"),
    ({"v_init": "gaussian"}, "v_init"),
    ({"backend": "cuda"}, "backend"),
    ({"v_reset": "soft"}, "v_reset"),
    ({"mps": "false"}, "mps='false'"),
    ({"decay_input": "False"}, "decay_input='False'"),
    ({"detach_reset": "no"}, "detach_reset='no'"),
    ({"mps": 1}, "mps=1"),
    ({"decay_input": None}, "decay_input=None"),
])
def test_bad_arguments_name_the_argument(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        LIF(**kwargs)


def test_boolean_keys_take_python_and_numpy_bools():
    import numpy as np

    lif = LIF(mps=np.bool_(True), decay_input=np.False_, detach_reset=True)
    assert lif.mps is True and lif.p.decay_input is False and lif.p.detach_reset is True
    assert type(lif.p.decay_input) is bool and type(lif.mps) is bool


def test_bad_input_is_named():
    lif = LIF()
    with pytest.raises(ValueError, match=r"time-first \[T, B, \.\.\.\].*shape \(5,\)"):
        lif(torch.randn(5))
    with pytest.raises(ValueError, match=r"T = 0 in shape \(0, 2, 3\)"):
        lif(torch.randn(0, 2, 3))
    with pytest.raises(TypeError, match="floating-point.*torch.int64"):
        lif(torch.ones(3, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="torch.Tensor"):
        lif([[1.0, 2.0]])


def test_recipe_string_bool_is_refused_not_truthy():
    # neuron={'mps': 'false'} from a YAML/JSON recipe used to turn MPS *on* (bool('false') is True)
    from chorus.models import NeuronConfig, create

    with pytest.raises(ValueError, match="mps='false'"):
        NeuronConfig.from_dict({"mps": "false"})
    with pytest.raises(ValueError, match="mps='false'"):
        create("vgg_small", 4, (2, 16, 16), neuron={"mps": "false"})
