"""bench/gpu_check.py starts and writes its JSON (issue 12): the CPU dry run, as a user would type it
(parts a-c here; part d, the real loop, in a slow test).

The exactness entries compare each backend with the plain per-timestep reference loop inside the
script; here every one of them must have passed, for both ``mps_init`` values, with the Triton kernels
(in interpreter mode) among them, and the GPU-only parts must say why they were skipped.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_writes_every_key(tmp_path):
    pytest.importorskip("spikingjelly")
    pytest.importorskip("triton")
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")  # a CPU run even on a GPU machine
    env.pop("OUT", None)
    p = subprocess.run([sys.executable, "bench/gpu_check.py", "--dry-run", "--out", str(tmp_path),
                        "--parts", "exactness", "speed", "train"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    d = json.loads((tmp_path / "gpu_check.json").read_text())
    assert {"device", "dry_run", "budget_s", "versions", "exactness", "speed", "train", "bars", "elapsed_s"} <= set(d)
    assert d["device"] == "cpu" and d["dry_run"] is True
    assert d["loop"] == {"ran": False, "reason": "not asked for (--parts)"}

    ex = d["exactness"]
    assert ex["ran"] and ex["passed"]
    assert all(e["passed"] and e["spikes_equal"] and e["grad_x_close"] for e in ex["entries"])
    triton_mps = {e["setting"] for e in ex["entries"] if e["backend"] == "triton" and "grad_alpha" in e}
    assert any("mps-first" in s for s in triton_mps) and any("mps-zero" in s for s in triton_mps)
    assert all(e["grad_alpha_close"] for e in ex["entries"] if "grad_alpha" in e)
    assert "autocast-bf16" in ex["skipped"] and "inductor" in ex["skipped"]

    sp = d["speed"]
    assert sp["ran"] and {r["T"] for r in sp["rows"]} == {4, 16}
    for T in (4, 16):
        rows = {r["candidate"]: r for r in sp["rows"] if r["T"] == T}
        assert "spikingjelly LIFNode" in rows and "chorus MPS on [auto]" in rows
        assert all(r["median_ms"] > 0 and r["speed_vs_sj"] > 0 for r in rows.values())
    assert "triton" in sp["skipped"]

    tr = d["train"]
    assert tr["ran"] and tr["precision"] == "fp32"
    names = {r["candidate"] for r in tr["rows"]}
    assert {"chorus MPS on", "chorus ReLU twin", "SpikingJelly LIF"} <= names
    assert all(r["finite"] and r["samples_per_s"] > 0 for r in tr["rows"])
    assert "mps_on_vs_sj" in tr and "mps_on_vs_relu_twin" in tr
    b = d["bars"]
    assert {"layer_T4_mps_on_vs_sj>=1", "layer_T16_mps_on_vs_sj>=1", "vgg9_train_mps_on_vs_sj>=1.3"} <= set(b)
    assert b["vgg9_train_mps_on_vs_sj>=1.3"]["value"] == tr["mps_on_vs_sj"]


def test_gpu_check_respects_its_budget(tmp_path):
    """With no time left every part is skipped, saying so, and the JSON still has every key."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    p = subprocess.run([sys.executable, "bench/gpu_check.py", "--dry-run", "--budget", "0.001", "--out", str(tmp_path)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    d = json.loads((tmp_path / "gpu_check.json").read_text())
    for part in ("exactness", "speed", "train", "loop"):
        assert d[part]["ran"] is False and "budget" in d[part]["reason"], d[part]
    assert d["bars"]["vgg9_train_mps_on_vs_sj>=1.3"] is None


@pytest.mark.slow  # makes the N-Digits shards and starts `chorus train`: about 25 s on 2 cores
def test_gpu_check_dry_run_trains_through_the_real_loop(tmp_path):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    env.pop("CHORUS_GPU_CHECK_SHARDS", None)
    p = subprocess.run([sys.executable, "bench/gpu_check.py", "--dry-run", "--parts", "loop", "--out", str(tmp_path)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    lp = json.loads((tmp_path / "gpu_check.json").read_text())["loop"]
    assert lp["ran"] and lp["passed"] and lp["recipe"] == "recipes/quickstart.yaml"
    (row,) = lp["rows"]
    assert row["ok"] and row["steps"] == 2 and row["samples_per_s"] > 0
    assert "DDP, ZeRO-2" in lp["skipped"]
