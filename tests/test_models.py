"""The model registry, neuron config, layer lookups and the spiking VGGs (issue 4)."""
import math

import pytest
import torch
from torch import nn

import chorus.models as M
from chorus.neurons import LIF


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_list_names_the_zoo():
    names = M.list()
    assert names == sorted(names)
    for must in ("vgg9", "vgg11", "vgg_small"):
        assert must in names


def test_unknown_model_lists_known_ones():
    with pytest.raises(KeyError, match="vgg9"):
        M.create("vgg99", 10, (2, 48, 48))


@pytest.mark.parametrize("bad", [(48, 48), (2, 48, 48, 1), (2, 0, 48), "2x48x48", 5])
def test_wrong_in_shape_is_named(bad):
    with pytest.raises(ValueError, match="in_shape"):
        M.create("vgg9", 10, bad)


def test_bad_num_classes_and_neuron_keys():
    with pytest.raises(ValueError, match="num_classes"):
        M.create("vgg_small", 0, (2, 34, 34))
    with pytest.raises(ValueError, match="'threshold'.*known keys"):
        M.create("vgg_small", 10, (2, 34, 34), neuron={"threshold": 1.0})
    with pytest.raises(ValueError, match="tau"):
        M.create("vgg_small", 10, (2, 34, 34), neuron={"tau": 0.5})
    with pytest.raises(TypeError, match="vgg_small.*widht"):
        M.create("vgg_small", 10, (2, 34, 34), widht=2)


def test_wrong_input_layout_is_named():
    m = M.create("vgg_small", 10, (2, 34, 34))
    with pytest.raises(ValueError, match=r"\[T, B, 2, 34, 34\]"):
        m(torch.rand(4, 2, 34, 34))


def test_vgg9_param_count_hand_computed():
    # VGG-9 of TET / the follow-up on 2x48x48, 10 classes, bias-free convs + BN, one linear readout:
    # convs 3x3: 2*64 + 64*128 + 128*256 + 256*256 + 256*512 + 3*512*512 in-out pairs, times 9;
    # BN: 2 per channel; readout: 512*3*3*10 + 10.
    convs = 9 * (2 * 64 + 64 * 128 + 128 * 256 + 256 * 256 + 256 * 512 + 3 * 512 * 512)
    bn = 2 * (64 + 128 + 256 + 256 + 4 * 512)
    fc = 512 * 3 * 3 * 10 + 10
    assert n_params(M.create("vgg9", 10, (2, 48, 48))) == convs + bn + fc == 9_268_746
    # MPS adds one β per spiking layer (8 conv blocks).
    assert n_params(M.create("vgg9", 10, (2, 48, 48), neuron={"mps": True})) == 9_268_746 + 8


def test_vgg9_matches_spikingjelly_build():
    sj = pytest.importorskip("spikingjelly.activation_based.layer")
    cfg = [64, 128, "P", 256, 256, "P", 512, 512, "P", 512, 512, "P"]
    mods, c = [], 2
    for item in cfg:
        if item == "P":
            mods.append(sj.AvgPool2d(2, step_mode="m"))
        else:
            mods += [sj.Conv2d(c, item, 3, padding=1, bias=False, step_mode="m"), sj.BatchNorm2d(item, step_mode="m")]
            c = item
    peer = nn.Sequential(*mods, sj.Flatten(step_mode="m"), sj.Linear(512 * 4 * 4, 11, step_mode="m"))
    assert n_params(M.create("vgg9", 11, (2, 64, 64))) == n_params(peer)


def test_vgg11_and_width():
    # conv pairs of configuration A; hidden 512, 512; input 2x48x48 pools to 1x1.
    convs = 9 * (2 * 64 + 64 * 128 + 128 * 256 + 256 * 256 + 256 * 512 + 3 * 512 * 512)
    bn = 2 * (64 + 128 + 2 * 256 + 4 * 512)
    head = (512 * 512 + 512) * 2 + 512 * 10 + 10
    assert n_params(M.create("vgg11", 10, (2, 48, 48))) == convs + bn + head
    half = M.create("vgg9", 10, (2, 48, 48), width=0.5)
    assert half.features[0].conv.out_channels == 32 and half.features[-1].conv.out_channels == 256
    with pytest.raises(ValueError, match="width"):
        M.create("vgg9", 10, (2, 48, 48), width=0)
    with pytest.raises(ValueError, match="in_shape"):
        M.create("vgg11", 10, (2, 16, 16))


def test_neuron_config_reaches_every_layer():
    cfg = {"tau": 3.0, "v_threshold": 0.7, "v_reset": None, "surrogate": "rect", "mps": True, "alpha_init": 0.2}
    m = M.create("vgg_small", 10, (2, 34, 34), neuron=cfg)
    layers = M.spiking_layers(m)
    assert [n for n, _ in layers] == [f"features.{i}.lif" for i in range(4)]
    for _, lif in layers:
        assert isinstance(lif, LIF)
        assert lif.p.tau == 3.0 and lif.p.v_threshold == 0.7 and lif.p.soft_reset and lif.p.surrogate == "rect"
        assert math.isclose(float(lif.alpha.detach()), 0.2, rel_tol=1e-6)
    assert M.mps_layers(m) == layers == m.mps_layers()
    assert M.mps_layers(M.create("vgg_small", 10, (2, 34, 34))) == []


def test_channels_last_gives_the_same_result():
    """In float64 and seeded: in float32 the two layouts' convolutions differ in the last bits, a
    potential that close to V_th flips a spike, and the outputs then differ by ~0.1 (it depended on the
    suite's RNG state and thread count: 8 of 10 seeds at 1 thread). float64 keeps every spike, so the
    layouts can be held to 1e-9 instead of 1e-4."""
    torch.manual_seed(0)
    a = M.create("vgg9", 10, (2, 48, 48), neuron={"mps": True}, width=0.25).double()
    b = M.create("vgg9", 10, (2, 48, 48), neuron={"mps": True}, width=0.25, channels_last=False).double()
    b.load_state_dict(a.state_dict())
    x = (torch.rand(3, 2, 2, 48, 48) < 0.3).double()
    ya, yb = a(x), b(x)
    torch.testing.assert_close(ya, yb, rtol=1e-9, atol=1e-9)
    ya.square().sum().backward()
    yb.square().sum().backward()
    torch.testing.assert_close(a.features[0].conv.weight.grad, b.features[0].conv.weight.grad, rtol=1e-8, atol=1e-9)
