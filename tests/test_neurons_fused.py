"""The fused LIF (C kernel and torch-ops path) against the plain per-timestep reference.

The reference (``chorus.neurons.reference``) runs autograd through a Python loop over the DESIGN.md
equations; the fused backward is a hand-derived recursion. Equal spikes and gradients over the whole
settings grid mean the derivation is right.
"""
import pytest
import torch

from neuron_grid import GRID

from chorus.neurons import LIF, cpu_kernel, lif_fused, lif_reference, make_params



@pytest.fixture(params=["kernel", "torch-ops"])
def path(request, monkeypatch):
    if request.param == "kernel":
        if not cpu_kernel.available():
            pytest.skip("no C compiler: the C kernel is unavailable")
    else:
        monkeypatch.setattr(cpu_kernel, "available", lambda: False)
    return request.param


def _run(fn, x, alpha, p, g_s, g_h, v0=None):
    x = x.detach().clone().requires_grad_()
    alpha = alpha.detach().clone().requires_grad_()
    s, hs, vp = fn(x, alpha, p, v0)
    ((s * g_s).sum() + (hs * g_h).sum()).backward()
    return s.detach(), hs.detach(), vp.detach(), x.grad, alpha.grad


@pytest.mark.parametrize("v_reset,decay_input,detach_reset,surrogate,mps", GRID)
def test_fused_equals_reference(path, v_reset, decay_input, detach_reset, surrogate, mps):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(6, 4, 37, generator=gen) * 1.5 + 0.4
    alpha = torch.tensor(0.37)
    g_s = torch.randn(x.shape, generator=gen)
    g_h = torch.randn(x.shape, generator=gen) * 0.3
    p = make_params(v_reset=v_reset, decay_input=decay_input, detach_reset=detach_reset, surrogate=surrogate, mps=mps)
    fused = _run(lambda x, a, p, v0: lif_fused(x, a, p, v0, want_vprev=True), x, alpha, p, g_s, g_h)
    ref = _run(lif_reference, x, alpha, p, g_s, g_h)
    s_f, hs_f, vp_f, gx_f, ga_f = fused
    s_r, hs_r, vp_r, gx_r, ga_r = ref
    assert s_f.sum() > 0 and s_f.sum() < s_f.numel()  # the case exercises both firing and silence
    assert torch.equal(s_f, s_r)
    assert torch.equal(hs_f, hs_r)
    assert torch.equal(vp_f, vp_r)
    torch.testing.assert_close(gx_f, gx_r, rtol=1e-5, atol=1e-6)
    if mps:
        torch.testing.assert_close(ga_f, ga_r, rtol=2e-4, atol=1e-5)
    else:
        assert ga_f is None or float(ga_f) == 0.0


def test_uniform_initial_potential_matches_reference(path):
    p = make_params(mps=True)
    x = torch.randn(5, 3, 11) * 1.5
    v0 = torch.rand(3, 11)
    g = torch.randn_like(x)
    fused = _run(lambda x, a, p, v0: lif_fused(x, a, p, v0, want_vprev=True), x, torch.tensor(0.6), p, g, 0 * g, v0)
    ref = _run(lif_reference, x, torch.tensor(0.6), p, g, 0 * g, v0)
    assert torch.equal(fused[0], ref[0])
    assert torch.equal(fused[2][0], v0)
    torch.testing.assert_close(fused[3], ref[3], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fused[4], ref[4], rtol=2e-4, atol=1e-5)


def test_kernel_matches_torch_ops_on_large_input():
    """The multi-threaded C kernel and the torch-ops recursion agree on a layer-sized tensor."""
    if not cpu_kernel.available():
        pytest.skip("no C compiler")
    p = make_params(mps=True, v_reset=None)
    x = torch.randn(4, 8, 16, 24, 24) * 2
    alpha = torch.tensor(0.7)
    g = torch.randn_like(x)
    res = []
    for use_kernel in (True, False):
        xk = x.clone().requires_grad_()
        ak = alpha.clone().requires_grad_()
        orig = cpu_kernel.available
        try:
            cpu_kernel.available = (lambda: True) if use_kernel else (lambda: False)
            s, _, _ = lif_fused(xk, ak, p)
        finally:
            cpu_kernel.available = orig
        (s * g).sum().backward()
        res.append((s, xk.grad, ak.grad))
    assert torch.equal(res[0][0], res[1][0])
    torch.testing.assert_close(res[0][1], res[1][1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(res[0][2], res[1][2], rtol=1e-4, atol=1e-4)


def test_module_backends_agree():
    for kw in ({}, {"mps": True, "alpha_init": 0.8}, {"v_reset": None, "surrogate": "atan", "mps": True}):
        a, b = LIF(**kw), LIF(backend="reference", **kw)
        x = (torch.randn(4, 2, 3, 5, 5) * 1.5).requires_grad_()
        x2 = x.detach().clone().requires_grad_()
        sa, sb = a(x), b(x2)
        assert torch.equal(sa, sb)
        sa.sum().backward()
        sb.sum().backward()
        torch.testing.assert_close(x.grad, x2.grad, rtol=1e-5, atol=1e-6)
        if a.mps:
            torch.testing.assert_close(a.beta.grad, b.beta.grad, rtol=2e-4, atol=1e-6)
