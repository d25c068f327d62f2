"""The C kernel's own paths: long sequences and ragged widths, its threading, what it keeps, its cache.

Correctness is checked against the plain per-timestep reference (``chorus.neurons.reference``; the
whole settings grid is in test_neurons_fused.py); the two ways of splitting the work over threads
(torch's OpenMP team inside the kernel, or a Python thread pool) must agree with it and with each
other. The build cache must key on the CPU's instruction set and must not remember a failure forever.
"""
import pytest
import torch

from chorus.neurons import LIF, cpu_kernel, lif_fused, lif_reference, machine, make_params

pytestmark = pytest.mark.skipif(not cpu_kernel.available(), reason="no C compiler: the C kernel is unavailable")



def _grads(fn, x, alpha, g, v0=None):
    x = x.detach().clone().requires_grad_()
    alpha = alpha.detach().clone().requires_grad_()
    s = fn(x, alpha, v0)
    (s * g).sum().backward()
    return s.detach(), x.grad, alpha.grad


@pytest.mark.parametrize("T,N", [(300, 1000), (3, 70_001), (1, 5)])
def test_recomputed_h_tilde_gives_the_same_gradients(T, N):
    """Long sequences (short scratch chunks), ragged N, T = 1: the backward of the states path (H~ and
    V(t−1) returned) and of the spikes-only path recompute the same H~, so the input gradients are
    bit-identical, and equal to the reference's."""
    p = make_params(mps=True, v_reset=None, surrogate="atan")
    x = torch.randn(T, N) * 1.5 + 0.2
    v0 = torch.rand(N)
    g = torch.randn(T, N)
    alpha = torch.tensor(0.6)
    kept = _grads(lambda x, a, v0: lif_fused(x, a, p, v0, want_vprev=True, backend="c")[0], x, alpha, g, v0)
    recomputed = _grads(lambda x, a, v0: lif_fused(x, a, p, v0, spikes_only=True, backend="c")[0], x, alpha, g, v0)
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
        fused = _grads(lambda x, a, v0: lif_fused(x, a, p, spikes_only=spikes_only, backend="c")[0], x, alpha, g)
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


def test_keeps_nothing_but_the_input():
    """Spikes only or with states: autograd keeps X alone (the backward recomputes H~ and H from it;
    H~ itself cannot give ∂L/∂α to full precision when α is near 1)."""
    lif = LIF(mps=True, backend="c")
    x = (torch.randn(4, 8, 4096) * 1.5).requires_grad_()
    seen, s = _saved_storages(lambda: lif(x))
    big = {ptr for ptr, n in seen.items() if n >= x.numel() * 4}
    assert big == {x.untyped_storage().data_ptr()}
    s.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0

    # with states requested, still only the input (H~ is returned, not kept)
    seen, (s, states) = _saved_storages(lambda: lif(x, return_states=True))
    big = {ptr for ptr, n in seen.items() if n >= x.numel() * 4}
    assert big == {x.untyped_storage().data_ptr()}
    assert states.h_tilde.untyped_storage().data_ptr() not in seen


def test_build_key_names_the_instruction_set(monkeypatch):
    """An AVX-512 build must never be found by an AVX2 node sharing the cache folder: the key changes
    with the CPU's model/flags (not just ``uname -m``), and with the target named by CHORUS_KERNEL_MARCH."""
    cc = "cc"
    flags = cpu_kernel._flags()
    here = cpu_kernel.build_key(cc, flags)
    monkeypatch.setattr(machine, "cpu_key", lambda: "another-cpu-kind")
    assert cpu_kernel.build_key(cc, flags) != here
    monkeypatch.setenv("CHORUS_KERNEL_MARCH", "znver3")
    assert "-march=znver3" in cpu_kernel._flags() and "-march=native" not in cpu_kernel._flags()


def test_failed_build_is_retried_after_its_ttl(tmp_path, monkeypatch):
    """A compiler that fails leaves its output in a .failed file; within FAIL_TTL the build is not
    tried again, after it it is."""
    monkeypatch.setenv("CHORUS_CACHE", str(tmp_path))
    bad = tmp_path / "bad-cc"
    bad.write_text("#!/bin/sh\necho 'no compiler here' >&2\nexit 1\n")
    bad.chmod(0o755)
    flags = cpu_kernel._flags() + cpu_kernel._SIMD_ONLY
    compiles = []
    real_run = cpu_kernel.subprocess.run

    def run(cmd, **kw):
        if str(cpu_kernel._SRC) in cmd:
            compiles.append(cmd)
        return real_run(cmd, **kw)

    monkeypatch.setattr(cpu_kernel.subprocess, "run", run)
    assert cpu_kernel._compile(str(bad), flags) is None
    failed = list((tmp_path / "kernels").glob("*.failed"))
    assert len(compiles) == 1 and len(failed) == 1 and "no compiler here" in failed[0].read_text()
    assert cpu_kernel._compile(str(bad), flags) is None and len(compiles) == 1  # remembered for now
    monkeypatch.setattr(cpu_kernel, "FAIL_TTL", 0.0)
    assert cpu_kernel._compile(str(bad), flags) is None and len(compiles) == 2  # and tried again later
