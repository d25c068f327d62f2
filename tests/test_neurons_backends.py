"""Backend names and ``backend="auto"``: what runs where, the measurement and its cache on disk.

``auto`` measures the float32 CPU backends once per machine kind and setting and keeps the result in
$CHORUS_CACHE/autotune/; here the candidates are limited to the C kernel and the eager recursion (no
compile), on a small measurement size, with the cache in a temporary folder.
"""
import json

import pytest
import torch

from chorus.neurons import LIF, autotune, backends, cpu_kernel, machine, make_params


@pytest.fixture
def fresh_auto(tmp_path, monkeypatch):
    monkeypatch.setenv("CHORUS_CACHE", str(tmp_path))
    monkeypatch.delenv("CHORUS_LIF_BACKEND", raising=False)
    monkeypatch.setattr(autotune, "_memo", {})
    monkeypatch.setattr(autotune, "N_MEASURE", 1 << 14)
    monkeypatch.setattr(backends, "FAST", ("c", "torch"))
    return tmp_path


def test_names_and_aliases():
    assert backends.canonical("fused") == "auto"
    for name in backends.BACKENDS:
        assert backends.canonical(name) == name
    with pytest.raises(ValueError, match="backend='cuda' is not known"):
        LIF(backend="cuda")


def test_explicit_backend_that_cannot_run_the_input_says_so(monkeypatch):
    p = make_params()
    with pytest.raises(ValueError, match="backend='c' runs float32 tensors on the CPU.*torch.float64"):
        backends.resolve("c", torch.zeros(2, 3, dtype=torch.float64), p)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="backend='triton' runs CUDA tensors"):
        backends.resolve("triton", torch.zeros(2, 3), p)


def test_auto_outside_float32_cpu_is_the_eager_recursion():
    p = make_params(mps=True)
    assert backends.resolve("auto", torch.zeros(2, 3, dtype=torch.float64), p) == "torch"
    assert backends.resolve("auto", torch.zeros(2, 3, dtype=torch.bfloat16), p) == "torch"


def test_pinned_auto(monkeypatch):
    monkeypatch.setenv("CHORUS_LIF_BACKEND", "torch")
    assert backends.resolve("auto", torch.zeros(4, 8), make_params()) == "torch"


def test_auto_measures_once_and_reads_the_cache(fresh_auto, monkeypatch):
    if not cpu_kernel.available():
        pytest.skip("no C compiler")
    p = make_params(mps=True, surrogate="rect")
    choice = backends.resolve("auto", torch.zeros(4, 8), p)
    files = list((fresh_auto / "autotune").glob("*.json"))
    assert len(files) == 1
    rec = json.loads(files[0].read_text())
    assert set(rec["times_ms"]) == {"c", "torch"} and choice == min(rec["times_ms"], key=rec["times_ms"].get)
    assert rec["key"]["cpu"] == machine.cpu_key() and rec["key"]["torch"] == torch.__version__
    assert rec["key"]["T"] == 4

    def no_measuring(*a, **k):
        raise AssertionError("measured again")

    monkeypatch.setattr(autotune, "measure", no_measuring)
    monkeypatch.setattr(autotune, "_memo", {})  # a new process: only the file is left
    assert backends.resolve("auto", torch.zeros(4, 8), p) == choice
    # another CPU kind (a node sharing the home folder) does not take this file
    monkeypatch.setattr(machine, "cpu_key", lambda: "another-cpu-kind")
    monkeypatch.setattr(autotune, "_memo", {})
    with pytest.raises(AssertionError, match="measured again"):
        backends.resolve("auto", torch.zeros(4, 8), p)


def test_auto_never_picks_a_backend_that_disagrees(fresh_auto, monkeypatch):
    if not cpu_kernel.available():
        pytest.skip("no C compiler")
    real = autotune._correct
    monkeypatch.setattr(autotune, "_correct", lambda name, p, T: name != "c" and real(name, p, T))
    rec = autotune.measure(make_params(mps=True), 4, n=1 << 12, rounds=1)
    assert rec["choice"] == "torch" and "disagrees" in rec["rejected"]["c"]


def test_auto_layer_equals_reference(fresh_auto):
    lif, ref = LIF(mps=True, mps_init="zero"), LIF(mps=True, mps_init="zero", backend="reference")
    x = (torch.randn(6, 2, 50) * 1.5).requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    s, s2 = lif(x), ref(x2)
    assert torch.equal(s, s2)
    s.sum().backward()
    s2.sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(lif.beta.grad, ref.beta.grad, rtol=2e-4, atol=1e-6)
