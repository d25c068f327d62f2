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


# ``self.scale`` of the official SSA (ZK-Zhou/spikformer): 0.25 in cifar10dvs/model.py (the 2-256 DVS
# model), 0.125 in cifar10/model.py and imagenet/model.py.
@pytest.mark.parametrize("name,in_shape,official_scale", [
    ("spikformer_2_256", (2, 128, 128), 0.25),
    ("spikformer_4_384", (3, 32, 32), 0.125),
])
def test_registered_spikformer_uses_the_official_attention_scale(name, in_shape, official_scale):
    m = M.create(name, 10, in_shape)
    scales = {blk.attn.scale for blk in m.blocks}
    assert scales == {official_scale}
    assert M.create("spikformer", 10, (2, 64, 64), depth=1, dim=32, heads=4).blocks[0].attn.scale == 0.125
    assert M.create("spikformer", 10, (2, 64, 64), depth=1, dim=32, heads=4, scale=0.25).blocks[0].attn.scale == 0.25


def test_ssa_attention_input_is_scaled_by_a_quarter_for_the_dvs_model():
    """The attention neuron's input equals (Q Kᵀ) V · 0.25 computed by hand from the Q, K, V spikes, in
    the official order and head layout (cifar10dvs/model.py), for the registered spikformer_2_256."""
    torch.manual_seed(0)
    m = M.create("spikformer_2_256", 10, (2, 128, 128)).eval()
    ssa = m.blocks[0].attn
    seen = {}
    for name in ("q_lif", "k_lif", "v_lif"):
        getattr(ssa, name).register_forward_hook(lambda mod, inp, out, name=name: seen.__setitem__(name, out))
    ssa.attn_lif.register_forward_pre_hook(lambda mod, inp: seen.__setitem__("attn_in", inp[0]))
    T, B, N, C, H = 2, 1, 6, 256, 16
    with torch.no_grad():
        ssa(torch.rand(T, B, N, C) * 6)
    q, k, v = (seen[n] for n in ("q_lif", "k_lif", "v_lif"))
    assert set(q.unique().tolist()) <= {0.0, 1.0} and q.sum() > 0 and k.sum() > 0 and v.sum() > 0
    d = C // H
    want = torch.zeros(T, B, N, C)
    for t in range(T):
        for h in range(H):
            qh, kh, vh = (z[t, 0, :, h * d:(h + 1) * d] for z in (q, k, v))  # [N, d]
            for i in range(N):
                for c in range(d):
                    want[t, 0, i, h * d + c] = 0.25 * sum(
                        float(qh[i] @ kh[j]) * float(vh[j, c]) for j in range(N))
    got = seen["attn_in"]  # [T, B, heads, N, d]
    got = got.permute(0, 1, 3, 2, 4).reshape(T, B, N, C)
    assert want.abs().sum() > 0
    assert torch.equal(got, want)


# Official SDT DVS configs (BICLab/Spike-Driven-Transformer): conf/gesture img_size 128, pooling_stat
# "0111" (3 max-pools: 128/8 = 16) and conf/cifar10-dvs img_size 64, pooling_stat "0011" (64/4 = 16),
# so both run on a 16x16 = 256-token grid.
@pytest.mark.parametrize("in_shape,patch", [((2, 128, 128), 8), ((2, 64, 64), 4)])
def test_sdt_2_256_has_the_official_16x16_token_grid(in_shape, patch):
    m = M.create("sdt_2_256", 10, in_shape)
    pools = [p for p in m.stem.pools if isinstance(p, torch.nn.MaxPool2d)]
    assert 2 ** len(pools) == patch
    # the official pooling_stat pools the last stages ("0111" / "0011"), never the first conv's output
    assert not isinstance(m.stem.pools[0], torch.nn.MaxPool2d)
    with torch.no_grad():
        tokens = m.stem(torch.rand(1, 1, *in_shape))
    assert tokens.shape == (1, 1, 16 * 16, 256)
    assert M.create("sdt_2_256", 10, (2, 64, 64), patch_size=16).stem(torch.rand(1, 1, 2, 64, 64)).shape[2] == 16
