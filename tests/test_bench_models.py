"""bench/models.py --quick (issue 12): the VGG-9 step benchmark starts and shows, in one run, a row for
every neuron backend the registry says runs on this host, chorus's ReLU twin and SpikingJelly's net,
each row with SpikingJelly's time from the same run and the ratios computed from the two times."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from chorus.neurons import backends, triton_lif

ROOT = Path(__file__).resolve().parents[1]


def test_models_quick_has_every_host_backend_and_the_peer(tmp_path):
    pytest.importorskip("spikingjelly")
    out = tmp_path / "models.json"
    p = subprocess.run([sys.executable, "bench/models.py", "--quick", "--json", str(out)], cwd=ROOT,
                       env=dict(os.environ), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    d = json.loads(out.read_text())
    rows = d["rows"]

    probe = torch.zeros(2, 1)
    expected = {n for n in backends.BACKENDS if n not in ("auto", "inductor")
                and (n == "reference" or backends.supports(n, probe))
                and not (n == "triton" and triton_lif.interpreting())}
    assert {f"chorus MPS on [{n}]" for n in expected} | {"chorus MPS on [auto]", "chorus MPS off [auto]"} \
        <= set(rows)
    assert "inductor" in d["left_out"]
    assert {"chorus ReLU twin", "SpikingJelly LIF", "SpikingJelly ReLU twin"} <= set(rows)
    sj = rows["SpikingJelly LIF"]["step_ms"]
    relu = rows["chorus ReLU twin"]["step_ms"]
    for name, r in rows.items():
        assert r["step_ms"] > 0 and r["sj_step_ms"] == sj, name
        assert math.isclose(r["vs_sj"], sj / r["step_ms"], rel_tol=1e-9), name
        assert math.isclose(r["vs_relu_twin"], r["step_ms"] / relu, rel_tol=1e-9), name
    assert math.isclose(d["mps_on_vs_relu_twin"], rows["chorus MPS on [auto]"]["step_ms"] / relu, rel_tol=1e-9)
    assert d["auto"] in backends.BACKENDS and d["auto"] != "auto"
    assert "within 5% of its ReLU twin" in p.stdout and "SpikingJelly LIF" in p.stdout
