"""BatchNorm under DeepSpeed half precision (chorus.train.fp32_norms): running statistics stay fp32 and the
arithmetic is torch's own BatchNorm on the widened tensors -- checked against a plain fp32
``nn.BatchNorm2d`` / ``BatchNorm1d`` given the same (bf16-rounded) weights and inputs; the bf16 statistics
the previous cast gave drift away from that reference."""
import copy

import pytest
import torch
from torch import nn

from chorus.train.fp32_norms import keep_fp32_statistics


def _pair(cls, c, momentum):
    torch.manual_seed(0)
    ref = cls(c, momentum=momentum)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
        ref.bias.uniform_(-0.5, 0.5)
    half = copy.deepcopy(ref)
    for p in half.parameters():
        p.data = p.data.to(torch.bfloat16)                 # what DeepSpeed bf16 does to parameters
    with torch.no_grad():
        ref.weight.copy_(half.weight.float())              # the reference sees the same rounded weights
        ref.bias.copy_(half.bias.float())
    return ref, half


@pytest.mark.parametrize("cls,shape,momentum", [(nn.BatchNorm2d, (8, 6, 5, 5), 0.1), (nn.BatchNorm1d, (32, 6), None),
                                                (nn.BatchNorm1d, (4, 6, 7), 0.3)])
def test_fp32_statistics_match_torch_batchnorm_on_widened_tensors(cls, shape, momentum):
    ref, half = _pair(cls, shape[1], momentum)
    model = nn.Sequential(half)
    assert keep_fp32_statistics(model, torch.bfloat16) == 1
    assert isinstance(half, cls) and half.running_var.dtype == torch.float32
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        x = (torch.randn(shape, generator=gen) * 3 + 2).to(torch.bfloat16).requires_grad_(True)
        xr = x.detach().float().requires_grad_(True)
        y, yr = half(x), ref(xr)
        assert y.dtype == torch.bfloat16
        assert torch.equal(y, yr.to(torch.bfloat16))
        y.float().sum().backward()
        yr.sum().backward()
    assert torch.equal(half.running_mean, ref.running_mean) and torch.equal(half.running_var, ref.running_var)
    assert half.num_batches_tracked == ref.num_batches_tracked == 20
    assert torch.allclose(half.weight.grad.float(), ref.weight.grad, rtol=2e-2, atol=1e-2)
    half.eval(), ref.eval()
    x = torch.randn(shape, generator=gen).to(torch.bfloat16)
    assert torch.equal(half(x), ref(x.float()).to(torch.bfloat16))
    assert set(half.state_dict()) == set(ref.state_dict())


def test_bf16_statistics_drift_from_the_fp32_reference():
    """Why: the statistics cast to bf16 (the previous behaviour) leave the reference after a few steps."""
    ref, half = _pair(nn.BatchNorm2d, 6, 0.1)
    half.running_mean.data, half.running_var.data = half.running_mean.bfloat16(), half.running_var.bfloat16()
    gen = torch.Generator().manual_seed(2)
    for _ in range(50):
        x = (torch.randn(8, 6, 5, 5, generator=gen) * 3 + 2).to(torch.bfloat16)
        half(x), ref(x.float())
    assert not torch.allclose(half.running_var.float(), ref.running_var, rtol=1e-4, atol=0)


def test_other_floating_buffers_follow_the_parameters_dtype():
    m = nn.Sequential(nn.BatchNorm1d(3), nn.Linear(3, 3))
    m[1].register_buffer("scale", torch.ones(3))
    keep_fp32_statistics(m, torch.bfloat16)
    assert m[1].scale.dtype == torch.bfloat16 and m[0].running_mean.dtype == torch.float32
    assert keep_fp32_statistics(m, torch.bfloat16) == 1 and type(m[0]).__mro__[1].__name__ == "_Fp32Statistics"
    assert copy.deepcopy(m)[0].forward.__self__ is not m[0]          # a class, not a bound method: copies work


def test_sync_batchnorm_keeps_its_own_forward():
    m = nn.Sequential(nn.SyncBatchNorm(3), nn.BatchNorm1d(3))
    assert keep_fp32_statistics(m, torch.bfloat16) == 1
    assert type(m[0]) is nn.SyncBatchNorm and m[0].running_mean.dtype == torch.bfloat16
    assert m[1].running_mean.dtype == torch.float32
