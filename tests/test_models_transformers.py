"""Spikformer and Spike-driven Transformer: published sizes, attention vs SpikingJelly, settings, errors."""
import pytest
import torch

import chorus.models as M
from chorus.models.neuron_config import NeuronConfig
from chorus.models.sdt import SpikeDrivenSelfAttention
from chorus.models.spikformer import SpikingSelfAttention


def n_params(m):
    return sum(p.numel() for p in m.parameters())


# Published sizes, rounded to 0.01M as printed:
# - Spikformer-2-256 on CIFAR10-DVS (2x128x128, 10 classes): 2.57M (Zhou et al., ICLR 2023, Table 3).
# - Spikformer-4-384 on CIFAR-10 (3x32x32): 9.32M (same paper, Table 2).
# - Spike-driven Transformer 2-256 on CIFAR10-DVS: 2.57M (Yao et al., NeurIPS 2023, Table 3).
# - Spike-driven Transformer 8-384 on ImageNet (3x224x224, 1000 classes): 16.81M (same paper, Table 1).
@pytest.mark.parametrize("name,classes,in_shape,published_m", [
    ("spikformer_2_256", 10, (2, 128, 128), 2.57),
    ("spikformer_4_384", 10, (3, 32, 32), 9.32),
    ("sdt_2_256", 10, (2, 128, 128), 2.57),
    ("sdt_8_384", 1000, (3, 224, 224), 16.81),
])
def test_published_sizes(name, classes, in_shape, published_m):
    assert abs(n_params(M.create(name, classes, in_shape)) / 1e6 - published_m) <= 0.01


def test_token_count_and_attention_threshold():
    m = M.create("spikformer", 4, (2, 64, 64), neuron={"v_threshold": 0.8, "mps": True}, depth=1, dim=32,
                 heads=4, patch_size=8)
    tokens = m.stem(torch.rand(2, 1, 2, 64, 64))
    assert tokens.shape == (2, 1, 64, 32)  # 64/8 = 8 -> 8x8 tokens of dim 32
    th = {name: lif.p.v_threshold for name, lif in M.spiking_layers(m)}
    assert th.pop("blocks.0.attn.attn_lif") == 0.5
    assert set(th.values()) == {0.8}
    sdt = M.create("sdt", 4, (2, 64, 64), depth=1, dim=32, heads=4, attn_v_threshold=0.25)
    assert sdt.blocks[0].attn.attn_lif.p.v_threshold == 0.25


@pytest.mark.parametrize("kw,match", [
    ({"dim": 30, "heads": 4}, "dim=30"),
    ({"dim": 36, "heads": 4}, "divisible by 8"),
    ({"patch_size": 6}, "patch_size=6"),
    ({"depth": 0}, "depth=0"),
])
def test_bad_sizes_are_named(kw, match):
    with pytest.raises(ValueError, match=match):
        M.create("spikformer", 10, (2, 64, 64), **kw)


def _sj_attention():
    return pytest.importorskip("spikingjelly.activation_based.layer.attention")


def test_ssa_matches_spikingjelly():
    """Our SSA (token layout, Q(KᵀV)) equals SpikingJelly's SpikingSelfAttention with copied weights."""
    att = _sj_attention()
    from spikingjelly.activation_based import functional

    dim, heads = 32, 4
    peer = att.SpikingSelfAttention(dim, heads).eval()
    ours = SpikingSelfAttention(dim, heads, NeuronConfig(tau=2.0, detach_reset=True)).eval()
    conv, bn = peer.qkv_conv_bn[0], peer.qkv_conv_bn[1]
    with torch.no_grad():
        for i, lin in enumerate((ours.q, ours.k, ours.v)):
            sl = slice(i * dim, (i + 1) * dim)
            lin.fc.weight.copy_(conv.weight[sl, :, 0])
            for n in ("weight", "bias", "running_mean", "running_var"):
                getattr(lin.bn, n).copy_(getattr(bn, n)[sl].detach() + 0.1 * torch.rand(dim))
                getattr(bn, n)[sl] = getattr(lin.bn, n)
        ours.proj.fc.weight.copy_(peer.proj_conv_bn[0].weight[:, :, 0] * 4)
        peer.proj_conv_bn[0].weight.mul_(4)
        ours.proj.fc.bias.zero_()  # SpikingJelly's projection has no bias
    x = torch.rand(3, 2, 16, dim) * 8  # [T, B, N, C]
    functional.reset_net(peer)
    want = peer(x.transpose(2, 3)).transpose(2, 3)
    assert want.sum() > 0
    assert torch.equal(ours(x), want)


def test_sdsa_matches_spikingjelly():
    """Our SDSA (token layout) equals SpikingJelly's SpikeDrivenSelfAttention with copied weights."""
    att = _sj_attention()
    from spikingjelly.activation_based import functional

    dim, heads = 32, 4
    peer = att.SpikeDrivenSelfAttention(dim, heads).eval()
    ours = SpikeDrivenSelfAttention(dim, heads, NeuronConfig(tau=2.0, detach_reset=True)).eval()
    assert n_params(ours) == n_params(peer)
    with torch.no_grad():
        for name in ("q", "k", "v", "proj"):
            conv, bn = getattr(peer, f"{name}_conv"), getattr(peer, f"{name}_bn")
            lin = getattr(ours, name)
            lin.fc.weight.copy_(conv.weight[:, :, 0, 0])
            if conv.bias is not None:
                lin.fc.bias.copy_(conv.bias)
            for n in ("weight", "bias", "running_mean", "running_var"):
                getattr(lin.bn, n).copy_(getattr(bn, n).detach() + 0.1 * torch.rand(dim))
                getattr(bn, n).copy_(getattr(lin.bn, n))
    x = torch.rand(3, 2, dim, 4, 4) * 4  # [T, B, C, H, W] for the peer
    functional.reset_net(peer)
    want = peer(x).flatten(3).transpose(2, 3)
    tokens = x.flatten(3).transpose(2, 3).contiguous()
    assert (want - tokens).abs().sum() > 0  # the attention branch contributes
    got = ours(tokens)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
