"""The fused LIF (``c`` kernel and eager ``torch`` recursion) against the plain per-timestep reference.

The reference (``chorus.neurons.reference``) runs autograd through a Python loop over the equations of
docs/method.md; the fused backward is a hand-derived recursion. Equal spikes and gradients (α included)
over the whole settings grid — both mps_init, α near 1, V_r = −0.3, τ = 3 — mean the derivation is right.
"""
import pytest
import torch

from neuron_grid import GRID, IDS, inputs

from chorus.neurons import LIF, cpu_kernel, lif_fused, lif_reference, make_params


@pytest.fixture(params=["c", "torch"])
def backend(request):
    if request.param == "c" and not cpu_kernel.available():
        pytest.skip("no C compiler: the C kernel is unavailable")
    return request.param


def _run(fn, x, alpha, p, g_s, g_h, v0=None):
    x = x.detach().clone().requires_grad_()
    alpha = alpha.detach().clone().requires_grad_()
    s, hs, vp = fn(x, alpha, p, v0)
    ((s * g_s).sum() + (hs * g_h).sum()).backward()
    return s.detach(), hs.detach(), vp.detach(), x.grad, alpha.grad


def _alpha_grad(g):
    return torch.zeros(()) if g is None else g


@pytest.mark.parametrize("case", GRID, ids=IDS)
def test_fused_equals_reference(backend, case):
    x, g_s, g_h = inputs(case, 1)
    alpha = torch.tensor(case.alpha)
    p = make_params(**case.params())
    fused = _run(lambda x, a, p, v0: lif_fused(x, a, p, v0, want_vprev=True, backend=backend), x, alpha, p, g_s, g_h)
    ref = _run(lif_reference, x, alpha, p, g_s, g_h)
    s_f, hs_f, vp_f, gx_f, ga_f = fused
    s_r, hs_r, vp_r, gx_r, ga_r = ref
    assert s_f.sum() > 0 and s_f.sum() < s_f.numel()  # the case exercises both firing and silence
    assert torch.equal(s_f, s_r)
    assert torch.equal(hs_f, hs_r)
    assert torch.equal(vp_f, vp_r)
    torch.testing.assert_close(gx_f, gx_r, rtol=1e-5, atol=1e-6)
    if case.mps:
        torch.testing.assert_close(ga_f, ga_r, rtol=2e-4, atol=1e-5)
    else:
        assert ga_f is None or float(ga_f) == 0.0


@pytest.mark.parametrize("case", GRID, ids=IDS)
def test_spikes_only_equals_reference(backend, case):
    """The network path: only spikes out, nothing but X kept; ∂L/∂S alone flows back."""
    x, g_s, _ = inputs(case, 2)
    alpha = torch.tensor(case.alpha)
    p = make_params(**case.params())
    res = []
    for fn in (lambda x, a: lif_fused(x, a, p, spikes_only=True, backend=backend)[0],
               lambda x, a: lif_reference(x, a, p)[0]):
        xi, ai = x.clone().requires_grad_(), alpha.clone().requires_grad_()
        s = fn(xi, ai)
        (s * g_s).sum().backward()
        res.append((s.detach(), xi.grad, _alpha_grad(ai.grad)))
    assert torch.equal(res[0][0], res[1][0])
    torch.testing.assert_close(res[0][1], res[1][1], rtol=1e-5, atol=1e-6)
    if case.mps:
        torch.testing.assert_close(res[0][2], res[1][2], rtol=2e-4, atol=1e-5)


@pytest.mark.parametrize("mps_init", ["first", "zero"])
def test_uniform_initial_potential_matches_reference(backend, mps_init):
    p = make_params(mps=True, mps_init=mps_init)
    x = torch.randn(5, 3, 11) * 1.5
    v0 = torch.rand(3, 11)
    g = torch.randn_like(x)
    fwd = lambda x, a, p, v0: lif_fused(x, a, p, v0, want_vprev=True, backend=backend)  # noqa: E731
    fused = _run(fwd, x, torch.tensor(0.6), p, g, 0 * g, v0)
    ref = _run(lif_reference, x, torch.tensor(0.6), p, g, 0 * g, v0)
    assert torch.equal(fused[0], ref[0])
    assert torch.equal(fused[2][0], v0)
    torch.testing.assert_close(fused[3], ref[3], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fused[4], ref[4], rtol=2e-4, atol=1e-5)


@pytest.mark.parametrize("T", [1, 2, 17, 40])
def test_any_sequence_length(backend, T):
    """T = 1 (no α term at all under "first"), and lengths that span several blocks of the recursion."""
    p = make_params(mps=True, surrogate="atan")
    x = torch.randn(T, 3, 29) * 1.5 + 0.4
    g = torch.randn_like(x)
    res = []
    for fn in (lambda x, a: lif_fused(x, a, p, spikes_only=True, backend=backend)[0],
               lambda x, a: lif_reference(x, a, p)[0]):
        xi, ai = x.clone().requires_grad_(), torch.tensor(0.8, requires_grad=True)
        s = fn(xi, ai)
        (s * g).sum().backward()
        res.append((s.detach(), xi.grad, _alpha_grad(ai.grad)))
    assert torch.equal(res[0][0], res[1][0])
    torch.testing.assert_close(res[0][1], res[1][1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(res[0][2], res[1][2], rtol=2e-4, atol=1e-5)
    if T == 1:
        assert float(res[0][2]) == 0.0  # H~(1) = H(1): α plays no part


def test_mps_init_first_starts_at_the_charge():
    """mps_init "first": H~(1) = H(1), so the first step fires exactly as the vanilla LIF; "zero" starts
    at (1 − α)·H(1) (hand-computed)."""
    x = torch.full((1, 1, 3), 1.5)
    first = LIF(mps=True, alpha_init=0.9)
    zero = LIF(mps=True, alpha_init=0.9, mps_init="zero")
    _, st_first = first(x, return_states=True)
    _, st_zero = zero(x, return_states=True)
    h1 = 0.0 + (1.5 - 0.0) / 2.0
    torch.testing.assert_close(st_first.h_tilde, torch.full_like(x, h1))
    torch.testing.assert_close(st_zero.h_tilde, torch.full_like(x, (1 - float(zero.alpha)) * h1))


def test_backends_agree_on_large_input():
    """The multi-threaded C kernel and the eager recursion agree on a layer-sized tensor."""
    if not cpu_kernel.available():
        pytest.skip("no C compiler")
    p = make_params(mps=True, v_reset=None)
    x = torch.randn(4, 8, 16, 24, 24) * 2
    alpha = torch.tensor(0.7)
    g = torch.randn_like(x)
    res = []
    for backend in ("c", "torch"):
        xk = x.clone().requires_grad_()
        ak = alpha.clone().requires_grad_()
        s, _, _ = lif_fused(xk, ak, p, spikes_only=True, backend=backend)
        (s * g).sum().backward()
        res.append((s, xk.grad, ak.grad))
    assert torch.equal(res[0][0], res[1][0])
    torch.testing.assert_close(res[0][1], res[1][1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(res[0][2], res[1][2], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend_name", ["auto", "c", "torch"])
def test_module_backends_agree(backend_name):
    if backend_name == "c" and not cpu_kernel.available():
        pytest.skip("no C compiler")
    for kw in ({}, {"mps": True, "alpha_init": 0.8}, {"v_reset": None, "surrogate": "atan", "mps": True},
               {"mps": True, "mps_init": "zero", "v_reset": -0.3}):
        a, b = LIF(backend=backend_name, **kw), LIF(backend="reference", **kw)
        x = (torch.randn(4, 2, 3, 5, 5) * 1.5).requires_grad_()
        x2 = x.detach().clone().requires_grad_()
        sa, sb = a(x), b(x2)
        assert torch.equal(sa, sb)
        sa.sum().backward()
        sb.sum().backward()
        torch.testing.assert_close(x.grad, x2.grad, rtol=1e-5, atol=1e-6)
        if a.mps:
            torch.testing.assert_close(a.beta.grad, b.beta.grad, rtol=2e-4, atol=1e-6)
