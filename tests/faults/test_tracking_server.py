"""The tracking server lost: a real `mlflow server` (sqlite store) on 127.0.0.1 that is down when
`chorus train` starts, and one killed (SIGKILL) mid-run. Training goes on to the end (exit 0, one
warning), metrics.jsonl holds every step of the run left alone, and what reached the server before it
died is still in its store, equal to the local rows."""
import json
import os
import signal
import subprocess
import time

import pytest

from runs import command, differing, final_weights, run, train_args
from test_train_support import ROOT, free_port, ndigits_shards, start_mlflow_server

pytestmark = pytest.mark.slow


def _rows(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _losses(out):
    return {r["step"]: r["train/loss"] for r in _rows(out) if "train/loss" in r}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    shards = ndigits_shards(tmp_path_factory)
    tmp = tmp_path_factory.mktemp("ref")
    out = tmp / "reference"
    done = run(train_args(shards, out, tmp, "tracking.enabled=true"))
    assert done.returncode == 0, done.stderr[-2000:]
    return shards, out


def test_server_down_at_start(reference, tmp_path, fault_record):
    shards, ref = reference
    out = tmp_path / "run"
    args = train_args(shards, out, tmp_path, "tracking.enabled=true", f"tracking.uri=http://127.0.0.1:{free_port()}")
    t0 = time.time()
    done = run(args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert done.stderr.count("WARNING") == 1 and "unreachable" in done.stderr
    assert time.time() - t0 < 300
    assert _losses(out) == _losses(ref)                          # every step kept locally
    assert differing(final_weights(ref), final_weights(out)) == []
    fault_record("tracking server down at start", 1, 1, 0)


def test_server_killed_mid_run(reference, tmp_path, fault_record):
    shards, ref = reference
    server, uri, db = start_mlflow_server(tmp_path)
    out = tmp_path / "run"
    try:
        cmd, e = command(train_args(shards, out, tmp_path, "tracking.enabled=true", f"tracking.uri={uri}"))
        train = subprocess.Popen(cmd, env=e, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while train.poll() is None and len(_losses(out) if (out / "metrics.jsonl").exists() else {}) < 5:
            time.sleep(0.02)
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    stdout, stderr = train.communicate(timeout=400)
    assert train.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    assert _losses(out) == _losses(ref)                           # every step kept locally
    run_id = json.loads((out / "run.json").read_text())["mlflow_run_id"]
    from mlflow.tracking import MlflowClient

    kept = {m.step: m.value for m in MlflowClient(db).get_metric_history(run_id, "train/loss")}
    assert len(kept) >= 2                                         # what reached the server before it died
    local = _losses(out)
    assert all(abs(kept[s] - local[s]) <= 1e-6 * max(1.0, abs(local[s])) for s in kept)
    fault_record("tracking server killed mid-run", 1, 1, 0, note=f"{len(kept)} steps on the server, all in metrics.jsonl")
