"""Spiking ResNet and SEW-ResNet: parameter counts against published figures, blocks, connect functions."""
import pytest
import torch

import chorus.models as M
from chorus.models.sew_resnet import SEWBasicBlock


def n_params(m):
    return sum(p.numel() for p in m.parameters())


# torchvision's published parameter counts (docs "Models and pre-trained weights", ResNet18_Weights /
# ResNet34_Weights num_params): a spiking ResNet with the ImageNet stem and 1000 classes has no other
# parameters (LIF without MPS has none); SEW with ADD adds none either (Fang et al., 2021, Table 2).
@pytest.mark.parametrize("name,published", [
    ("resnet18", 11_689_512), ("resnet34", 21_797_672),
    ("sew_resnet18", 11_689_512), ("sew_resnet34", 21_797_672),
])
def test_imagenet_param_counts_match_torchvision(name, published):
    m = M.create(name, 1000, (3, 224, 224))
    assert m.stem_kind == "imagenet"
    assert n_params(m) == published


def test_mps_adds_one_parameter_per_spiking_layer():
    m = M.create("sew_resnet18", 1000, (3, 224, 224), neuron={"mps": True})
    # stem 1 + 8 blocks x 2 + 3 downsampling shortcuts with their own LIF = 20 spiking layers
    assert len(M.mps_layers(m)) == 20
    assert n_params(m) == 11_689_512 + 20


def test_resnet19_param_count_hand_computed():
    # tdBN/TET ResNet-19 on CIFAR-10 (3x32x32): stem conv3x3 3->128; stages 3x128, 3x256, 2x512 basic
    # blocks with conv1x1 shortcuts at the two width changes; fc 512->256 (spiking), readout 256->10.
    conv = lambda cin, cout, k=3: cin * cout * k * k  # noqa: E731
    stem = conv(3, 128) + 2 * 128
    s1 = 6 * conv(128, 128) + 6 * 2 * 128
    s2 = conv(128, 256) + 5 * conv(256, 256) + conv(128, 256, 1) + 7 * 2 * 256
    s3 = conv(256, 512) + 3 * conv(512, 512) + conv(256, 512, 1) + 5 * 2 * 512
    head = 512 * 256 + 256 + 256 * 10 + 10
    assert n_params(M.create("resnet19", 10, (3, 32, 32))) == stem + s1 + s2 + s3 + head == 12_697_994


def test_stem_choice_and_errors():
    assert M.create("resnet18", 10, (2, 48, 48)).stem_kind == "cifar"
    assert M.create("resnet18", 10, (2, 128, 128)).stem_kind == "imagenet"
    with pytest.raises(ValueError, match="stem='vit'"):
        M.create("resnet18", 10, (2, 48, 48), stem="vit")
    assert M.create("resnet34", 10, (2, 48, 48), width=0.5).stages[3][0].branch1[0].out_channels == 256
    with pytest.raises(ValueError, match="width"):
        M.create("resnet19", 10, (2, 48, 48), width=-1)
    with pytest.raises(ValueError, match="connect='OR'.*ADD"):
        M.create("sew_resnet18", 10, (2, 48, 48), connect="OR")


def test_sew_connect_functions_by_hand():
    # With an identity shortcut the block output is g(O, x); feed binary spikes x and check g exactly.
    from chorus.models.neuron_config import NeuronConfig

    outs = {}
    x = (torch.rand(2, 3, 4, 5, 5) < 0.5).float()
    for connect in ("ADD", "AND", "IAND"):
        torch.manual_seed(0)
        blk = SEWBasicBlock(4, 4, 1, NeuronConfig(), connect=connect)
        T = x.shape[0]
        o = blk.lif2(blk.branch2(blk.lif1(blk.branch1(x.flatten(0, 1)).unflatten(0, (T, -1))).flatten(0, 1))
                     .unflatten(0, (T, -1)))
        outs[connect] = (blk(x), o)
    y, o = outs["ADD"]
    assert torch.equal(y, o + x)
    y, o = outs["AND"]
    assert torch.equal(y, o * x)
    y, o = outs["IAND"]
    assert torch.equal(y, (1 - o) * x)
