"""Every registered model at a small size: shapes, gradients to all parameters and α, MPS-off ≡ α = 0.

Issue 4, "Tests": forward and backward on CPU, output ``[T, B, classes]``, every parameter receives a
gradient, α of every MPS layer receives a gradient; a model built with MPS off and the same model with
MPS on and α forced to 0 (β = −inf, sigmoid(−inf) = 0 exactly) give identical outputs.
"""
import pytest
import torch

import chorus.models as M

T, B, CLASSES = 3, 2, 5

# name -> (in_shape, create keywords) at a size that runs in about a second. The Transformers need
# enough tokens that their sparse attention spikes at all at initialisation (SDSA sums K*V over tokens).
SMALL = {
    "vgg9": ((2, 32, 32), {"width": 0.125}),
    "vgg11": ((2, 32, 32), {"width": 0.125, "hidden": 16}),
    "vgg_small": ((2, 34, 34), {}),
    "resnet18": ((2, 16, 16), {"width": 0.25}),
    "resnet19": ((2, 16, 16), {"width": 0.125}),
    "resnet34": ((2, 16, 16), {"width": 0.125}),
    "sew_resnet18": ((2, 16, 16), {"width": 0.25, "connect": "IAND"}),
    "sew_resnet34": ((2, 16, 16), {"width": 0.125}),
    "spikformer": ((2, 32, 32), {"depth": 1, "dim": 32, "heads": 4, "patch_size": 8}),
    "spikformer_2_256": ((2, 32, 32), {}),
    "spikformer_4_384": ((3, 16, 16), {}),
    "sdt": ((2, 32, 32), {"depth": 1, "dim": 32, "heads": 4, "patch_size": 4}),
    "sdt_2_256": ((2, 64, 64), {}),
    "sdt_8_384": ((3, 64, 64), {}),
    "pointnet": ((64, 3), {}),
    "srnn": ((700,), {"hidden": (32, 32)}),
}


def small_input(name, in_shape, model):
    if M.entry(name).input_kind == "points":
        return torch.randn(B, *in_shape)
    return torch.rand(T, B, *in_shape) * 2


def test_every_registered_model_is_covered_here():
    assert sorted(SMALL) == M.list()


@pytest.mark.parametrize("name", sorted(SMALL))
def test_forward_backward_every_model(name):
    in_shape, kw = SMALL[name]
    if M.entry(name).input_kind == "points":
        kw = {**kw, "timesteps": T}
    # A threshold of 0.5 makes the freshly initialised nets fire enough that every layer is on a path.
    model = M.create(name, CLASSES, in_shape, neuron={"mps": True, "alpha_init": 0.3, "v_threshold": 0.5}, **kw)
    x = small_input(name, in_shape, model)
    y = model(x)
    assert y.shape == (T, B, CLASSES)
    # Weight each timestep and class differently so no gradient can vanish by symmetry.
    w = torch.randn(T, B, CLASSES)
    (y * w).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"{name}: no (finite) gradient for {missing}"
    mps = model.mps_layers()
    assert len(mps) == len(model.spiking_layers()) > 0
    zero_alpha = [n for n, lif in mps if lif.beta.grad is None or lif.beta.grad.item() == 0.0]
    assert not zero_alpha, f"{name}: α receives no gradient in {zero_alpha}"


# One model per family and block type (the larger named configurations repeat these blocks).
ALPHA_ZERO = ["vgg9", "vgg11", "vgg_small", "resnet18", "resnet19", "sew_resnet18", "spikformer", "sdt",
              "pointnet", "srnn"]


@pytest.mark.parametrize("name", ALPHA_ZERO)
def test_mps_off_equals_mps_on_with_alpha_zero(name):
    in_shape, kw = SMALL[name]
    if M.entry(name).input_kind == "points":
        kw = {**kw, "timesteps": T}
    torch.manual_seed(1)
    off = M.create(name, CLASSES, in_shape, neuron={"mps": False}, **kw).eval()
    on = M.create(name, CLASSES, in_shape, neuron={"mps": True}, **kw).eval()
    missing, unexpected = on.load_state_dict(off.state_dict(), strict=False)
    assert not unexpected and all(k.endswith("beta") for k in missing) and missing
    with torch.no_grad():
        for _, lif in on.mps_layers():
            lif.beta.fill_(float("-inf"))
    x = small_input(name, in_shape, off)
    assert torch.equal(off(x), on(x))
