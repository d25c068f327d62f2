"""The Triton kernels against the plain per-timestep reference, over the whole settings grid.

Without a GPU they run on CPU tensors in Triton's interpreter (``TRITON_INTERPRET=1``, set by
conftest.py before Triton is first imported); on a CUDA machine the same tests launch the compiled
kernels on the GPU. Spikes, H~ and V(t−1) must be bit-identical, ∂L/∂X and ∂L/∂α equal to fp32
rounding, whether the backward gets H~ kept from the forward or recomputed, and for fp16 input.
"""
import os

import pytest
import torch

from neuron_grid import GRID, IDS, inputs

from chorus.neurons import LIF, lif_fused, lif_reference, make_params

triton = pytest.importorskip("triton")

from chorus.neurons import triton_lif  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("no GPU and Triton was not started in interpreter mode (TRITON_INTERPRET=1)",
                allow_module_level=True)


@pytest.fixture(params=[True, False], ids=["keep", "recompute"])
def keep(request, monkeypatch):
    monkeypatch.setattr(triton_lif, "KEEP", request.param)
    return request.param


def _run(fn, x, alpha, g_s, g_h, v0=None):
    x = x.detach().clone().to(DEVICE).requires_grad_()
    alpha = alpha.detach().clone().to(DEVICE).requires_grad_()
    s, hs, vp = fn(x, alpha, None if v0 is None else v0.to(DEVICE))
    ((s * g_s.to(DEVICE)).sum() + (hs * g_h.to(DEVICE)).sum()).backward()
    return [t.detach().cpu() if t is not None else None for t in (s, hs, vp, x.grad, alpha.grad)]


@pytest.mark.parametrize("case", GRID, ids=IDS)
def test_triton_equals_reference(keep, case):
    x, g_s, g_h = inputs(case, 1)
    alpha = torch.tensor(case.alpha)
    p = make_params(**case.params())
    got = _run(lambda x, a, v0: lif_fused(x, a, p, v0, want_vprev=True, backend="triton"), x, alpha, g_s, g_h)
    ref = _run(lambda x, a, v0: lif_reference(x, a, p, v0), x, alpha, g_s, g_h)
    assert 0 < got[0].sum() < got[0].numel()
    assert torch.equal(got[0], ref[0])
    assert torch.equal(got[1], ref[1])
    assert torch.equal(got[2], ref[2])
    torch.testing.assert_close(got[3], ref[3], rtol=1e-5, atol=1e-6)
    if case.mps:
        torch.testing.assert_close(got[4], ref[4], rtol=2e-4, atol=1e-5)


@pytest.mark.parametrize("T", [1, 3, 40])
def test_triton_spikes_only_any_length_with_v0(keep, T):
    p = make_params(mps=True, v_reset=None, surrogate="atan")
    x = torch.randn(T, 3, 700) * 1.5 + 0.3  # 2100 neurons: three programs, the last one ragged
    v0 = torch.rand(3, 700)
    g = torch.randn_like(x)
    res = []
    for fn in (lambda x, a, v0: lif_fused(x, a, p, v0, spikes_only=True, backend="triton")[0],
               lambda x, a, v0: lif_reference(x, a, p, v0)[0]):
        xi = x.clone().to(DEVICE).requires_grad_()
        ai = torch.tensor(0.7, device=DEVICE, requires_grad=True)
        s = fn(xi, ai, v0.to(DEVICE))
        (s * g.to(DEVICE)).sum().backward()
        res.append((s.detach().cpu(), xi.grad.cpu(), torch.zeros(()) if ai.grad is None else ai.grad.cpu()))
    assert torch.equal(res[0][0], res[1][0])
    torch.testing.assert_close(res[0][1], res[1][1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(res[0][2], res[1][2], rtol=2e-4, atol=1e-5)


def test_triton_takes_fp16_input_and_keeps_the_membrane_in_fp32():
    """fp16 currents go into the kernel as they are (no upcast copy): the spikes are those of the same
    currents integrated in fp32, returned in fp16; gradients come back in fp16, α's in fp32."""
    lif = LIF(mps=True, backend="triton").to(DEVICE)
    x = (torch.randn(4, 2, 300) * 1.5 + 0.3).half().to(DEVICE).requires_grad_()
    s = lif(x)
    assert s.dtype == torch.float16
    ref = LIF(mps=True, backend="reference").to(DEVICE)
    x32 = x.detach().float().requires_grad_()
    s_ref = ref(x32)
    assert torch.equal(s.float(), s_ref)
    s.float().sum().backward()
    s_ref.sum().backward()
    assert x.grad.dtype == torch.float16 and lif.beta.grad.dtype == torch.float32
    torch.testing.assert_close(x.grad.float(), x32.grad.half().float(), rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(lif.beta.grad, ref.beta.grad, rtol=1e-3, atol=1e-4)


def test_alpha_gradient_stays_on_the_device():
    """∂L/∂α is a device tensor summed from per-program partials (no .item(), no host round trip)."""
    p = make_params(mps=True)
    x = torch.randn(4, 5000, device=DEVICE)
    a = torch.tensor(0.5, device=DEVICE)
    s, hs, _ = triton_lif.run_forward(x, None, p, a, True, False)
    gx, acc = triton_lif.run_backward(x, None, hs, torch.ones_like(s), None, p, a)
    assert acc.device.type == x.device.type and acc.dtype == torch.float64 and acc.dim() == 0
