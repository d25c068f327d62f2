"""The ``inductor`` backend (the recursion of chorus.neurons.recursion compiled by torch.compile).

The whole settings grid runs through the same Python recursion eagerly (backend ``torch``, in
test_neurons_fused.py); here a few settings are compiled and checked against the plain reference,
plus what compiling must not cost: a recompile per layer shape or per τ, an unroll longer than one
block, or a second compile in a second process (Inductor's disk cache under $CHORUS_CACHE/inductor).
Compiling takes tens of seconds on a 2-core machine with a cold cache, hence ``slow``.
"""
import json
import os
import subprocess
import sys

import pytest
import torch

from chorus.neurons import inductor, lif_fused, lif_reference, make_params, recursion

pytestmark = pytest.mark.slow

SETTINGS = [dict(mps=True), dict(mps=True, mps_init="zero", v_reset=-0.3, tau=3.0, surrogate="atan")]


def _both(p, x, g_s, g_h, alpha, want_states):
    out = []
    for name in ("inductor", "reference"):
        xi = x.clone().requires_grad_()
        ai = torch.tensor(alpha, requires_grad=True)
        if name == "reference":
            s, hs, vp = lif_reference(xi, ai, p)
        else:
            s, hs, vp = lif_fused(xi, ai, p, want_vprev=want_states, spikes_only=not want_states, backend=name)
        loss = (s * g_s).sum() + ((hs * g_h).sum() if want_states else 0)
        loss.backward()
        out.append((s.detach(), None if hs is None else hs.detach(), xi.grad,
                    torch.zeros(()) if ai.grad is None else ai.grad))
    return out


@pytest.mark.parametrize("kw", SETTINGS, ids=["first-sigmoid", "zero-vr-0.3-tau3-atan"])
@pytest.mark.parametrize("want_states", [False, True], ids=["spikes", "states"])
def test_compiled_equals_reference(kw, want_states):
    p = make_params(**kw)
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(5, 3, 41, generator=gen) * 1.5 + 0.4
    got, ref = _both(p, x, torch.randn(x.shape, generator=gen), torch.randn(x.shape, generator=gen) * 0.3, 0.9,
                     want_states)
    assert torch.equal(got[0], ref[0])
    if want_states:
        assert torch.equal(got[1], ref[1])
    torch.testing.assert_close(got[2], ref[2], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got[3], ref[3], rtol=2e-4, atol=1e-5)


def test_long_sequence_runs_in_blocks():
    """T = 40 runs as blocks of at most recursion.BLOCK steps (16, 16, 8), exactly as the reference."""
    p = make_params(**SETTINGS[0])
    x = torch.randn(40, 2, 33) * 1.5 + 0.3
    got, ref = _both(p, x, torch.randn_like(x), None, 0.7, False)
    assert torch.equal(got[0], ref[0])
    torch.testing.assert_close(got[2], ref[2], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got[3], ref[3], rtol=2e-4, atol=1e-5)
    assert inductor._compiled and max(k[2] for k in inductor._compiled) <= recursion.BLOCK


def test_no_recompile_for_another_layer_shape_or_tau():
    from torch._dynamo.utils import counters

    p = make_params(**SETTINGS[0])
    a = torch.tensor(0.5)
    lif_fused(torch.randn(5, 1000), a, p, spikes_only=True, backend="inductor")  # compiled (or loaded) once
    before = counters["stats"]["unique_graphs"]
    for n, tau in ((37, 2.0), (4096, 2.0), (999, 3.5)):
        x = torch.randn(5, n) * 1.5
        q = make_params(**{**SETTINGS[0], "tau": tau})
        s = lif_fused(x, a, q, spikes_only=True, backend="inductor")[0]
        assert torch.equal(s, lif_reference(x, a, q)[0])
    assert counters["stats"]["unique_graphs"] == before


def test_second_process_loads_the_compiled_blocks_from_disk(tmp_path):
    """A fresh process (a second DDP rank, a second run) finds the blocks in Inductor's on-disk cache,
    kept under $CHORUS_CACHE/inductor/<torch>-<cpu key>, instead of compiling them again. Two processes
    run the same forward + backward on an empty cache of their own (the suite's shared cache and this
    process's in-memory blocks depend on which tests ran before): the first compiles and writes, the
    second only reads."""
    code = ("import json, torch\n"
            "from torch._dynamo.utils import counters\n"
            "from chorus.neurons import inductor, lif_fused, make_params\n"
            "p = make_params(mps=True)\n"
            "x = torch.randn(5, 300).requires_grad_()\n"
            "lif_fused(x, torch.tensor(0.5), p, spikes_only=True, backend='inductor')[0].sum().backward()\n"
            "print(json.dumps({'dir': inductor.cache_dir(), **counters['inductor']}))\n")
    env = {**os.environ, "CHORUS_CACHE": str(tmp_path / "cache")}
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)
    runs = []
    for _ in range(2):
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
        assert res.returncode == 0, res.stderr[-2000:]
        runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
    first, second = runs
    assert first["dir"].startswith(str(tmp_path / "cache" / "inductor")) and os.listdir(first["dir"])
    assert first.get("fxgraph_cache_miss", 0) >= 2, first              # forward and backward compiled
    assert second.get("fxgraph_cache_hit", 0) >= 2 and second.get("fxgraph_cache_miss", 0) == 0, second
