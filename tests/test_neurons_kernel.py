"""The C kernel's own paths: spikes-only (H~ recomputed in the backward), its threading, and what it keeps.

Correctness is checked against the plain per-timestep reference (``chorus.neurons.reference``); the
two ways of splitting the work over threads (torch's OpenMP team inside the kernel, or a Python
thread pool) and the two ways of feeding the backward (H~ kept, or recomputed) must agree with it and
with each other.
"""
import pytest
import torch

from neuron_grid import GRID

from chorus.neurons import LIF, cpu_kernel, lif_fused, lif_reference, make_params

pytestmark = pytest.mark.skipif(not cpu_kernel.available(), reason="no C compiler: the C kernel is unavailable")



def _grads(fn, x, alpha, g, v0=None):
    x = x.detach().clone().requires_grad_()
    alpha = alpha.detach().clone().requires_grad_()
    s = fn(x, alpha, v0)
    (s * g).sum().backward()
    return s.detach(), x.grad, alpha.grad


@pytest.mark.parametrize("v_reset,decay_input,detach_reset,surrogate,mps", GRID)
def test_spikes_only_equals_reference(v_reset, decay_input, detach_reset, surrogate, mps):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(6, 4, 37, generator=gen) * 1.5 + 0.4
    g = torch.randn(x.shape, generator=gen)
    p = make_params(v_reset=v_reset, decay_input=decay_input, detach_reset=detach_reset, surrogate=surrogate, mps=mps)
    alpha = torch.tensor(0.37)
    s_f, gx_f, ga_f = _grads(lambda x, a, v0: lif_fused(x, a, p, v0, spikes_only=True)[0], x, alpha, g)
    s_r, gx_r, ga_r = _grads(lambda x, a, v0: lif_reference(x, a, p, v0)[0], x, alpha, g)
    assert 0 < s_f.sum() < s_f.numel()
    assert torch.equal(s_f, s_r)
    torch.testing.assert_close(gx_f, gx_r, rtol=1e-5, atol=1e-6)
    if mps:
        torch.testing.assert_close(ga_f, ga_r, rtol=2e-4, atol=1e-5)


@pytest.mark.parametrize("T,N", [(300, 1000), (3, 70_001), (1, 5)])
def test_recomputed_h_tilde_gives_the_kept_one_exactly(T, N):
    """Long sequences (scratch chunks shorter than the kept path's), ragged N, T = 1: the recomputed
    H~ is bit-identical to the kept one, so the input gradient is too."""
    p = make_params(mps=True, v_reset=None, surrogate="atan")
    x = torch.randn(T, N) * 1.5 + 0.2
    v0 = torch.rand(N)
    g = torch.randn(T, N)
    alpha = torch.tensor(0.6)
    kept = _grads(lambda x, a, v0: lif_fused(x, a, p, v0)[0], x, alpha, g, v0)
    recomputed = _grads(lambda x, a, v0: lif_fused(x, a, p, v0, spikes_only=True)[0], x, alpha, g, v0)
    assert torch.equal(kept[0], recomputed[0])
    assert torch.equal(kept[1], recomputed[1])
    torch.testing.assert_close(kept[2], recomputed[2], rtol=1e-5, atol=1e-6)
    ref = _grads(lambda x, a, v0: lif_reference(x, a, p, v0)[0], x[:, :2000], alpha, g[:, :2000], v0[:2000])
    assert torch.equal(recomputed[0][:, :2000], ref[0])
    torch.testing.assert_close(recomputed[1][:, :2000], ref[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("team", [True, False])
@pytest.mark.parametrize("spikes_only", [True, False])
def test_thread_splits_match_reference(team, spikes_only, monkeypatch):
    """A layer-sized input split over 2 threads, by torch's OpenMP team or by the Python pool."""
    if team and not cpu_kernel._lib.lif_has_openmp():
        pytest.skip("the kernel was built without OpenMP")
    monkeypatch.setattr(cpu_kernel, "_use_team", team)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        p = make_params(mps=True)
        x = torch.randn(4, 3, 64, 20, 20) * 1.5 + 0.3  # 76,800 neurons: 2 slices of 38,400
        g = torch.randn_like(x)
        alpha = torch.tensor(0.45)
        assert cpu_kernel._threads(x[0].numel()) == 2
        fused = _grads(lambda x, a, v0: lif_fused(x, a, p, spikes_only=spikes_only)[0], x, alpha, g)
        ref = _grads(lambda x, a, v0: lif_reference(x, a, p)[0], x, alpha, g)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(fused[0], ref[0])
    torch.testing.assert_close(fused[1], ref[1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fused[2], ref[2], rtol=1e-4, atol=1e-5)


def test_team_path_shares_torchs_openmp_runtime():
    """When the kernel runs on an OpenMP team, it is torch's: both resolve the OpenMP entry points to
    the same code."""
    if not cpu_kernel._use_team:
        pytest.skip("the kernel splits over its Python pool here (no shared OpenMP runtime)")
    import ctypes

    kernel = ctypes.cast(cpu_kernel._lib.omp_get_num_threads, ctypes.c_void_p).value
    torch_side = ctypes.cast(ctypes.CDLL(torch._C.__file__).omp_get_num_threads, ctypes.c_void_p).value
    assert kernel == torch_side


def _saved_storages(fn):
    seen = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return seen, out


def test_spikes_only_keeps_nothing_but_the_input():
    lif = LIF(mps=True)
    x = (torch.randn(4, 8, 4096) * 1.5).requires_grad_()
    seen, s = _saved_storages(lambda: lif(x))
    big = {ptr for ptr, n in seen.items() if n >= x.numel() * 4}
    assert big == {x.untyped_storage().data_ptr()}
    s.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0

    # with states requested, H~ is what is kept (the input is not)
    seen, (s, states) = _saved_storages(lambda: lif(x, return_states=True))
    big = {ptr for ptr, n in seen.items() if n >= x.numel() * 4}
    assert big == {states.h_tilde.untyped_storage().data_ptr()}
