"""Issue 18, item 2: after a SIGKILL and `--resume`, every step's metrics appear ONCE in metrics.jsonl
and in MLflow, and equal the run left alone (the train/* averaging window spans checkpoints here:
log_every=3, checkpoint_every=4). Only the wall-clock rates (samples_per_s) may differ."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

from chorus.train.checkpoint import latest_checkpoint, read_state
from test_train_support import ROOT, env, ndigits_shards, tiny

QUICKSTART = os.path.join(ROOT, "recipes", "quickstart.yaml")
CLOCK = ("time", "train/samples_per_s", "perf/samples_per_s")


def cmd(shards, out, tmp, *extra):
    return [sys.executable, "-m", "chorus.cli", "train", QUICKSTART,
            *tiny(shards, str(out), tmp, "train.checkpoint_every=4", "train.log_every=3", "loss.p_drop=0.3",
                  "data.augment=true", *extra)]


def rows(out) -> list[dict]:
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [{k: v for k, v in json.loads(line).items() if k not in CLOCK} for line in f]


def mlflow_history(client, out) -> dict:
    rid = json.load(open(os.path.join(out, "run.json")))["mlflow_run_id"]
    keys = [k for k in client.get_run(rid).data.metrics if k not in CLOCK]
    return {k: sorted((m.step, m.value) for m in client.get_metric_history(rid, k)) for k in keys}


@pytest.mark.slow
def test_sigkill_and_resume_log_each_step_once_with_the_uninterrupted_values(tmp_path_factory, tmp_path):
    shards = ndigits_shards(tmp_path_factory)
    full = subprocess.run(cmd(shards, tmp_path / "full", tmp_path), env=env(), capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert full.returncode == 0, full.stderr[-3000:]

    out = tmp_path / "killed"
    proc = subprocess.Popen(cmd(shards, out, tmp_path), env=env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    # step 9 is logged after checkpoint step_8 was written: the kill leaves rows the checkpoint does not cover
    while proc.poll() is None and time.time() < deadline:
        if (out / "metrics.jsonl").exists() and any(r.get("step", 0) >= 9 for r in rows(out)):
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before the kill"
    left = read_state(latest_checkpoint(str(out / "checkpoints")))["step"]
    assert any(r["step"] > left for r in rows(out)), "no row after the checkpoint: nothing tested"

    resumed = subprocess.run(cmd(shards, out, tmp_path, "train.resume=auto"), env=env(), capture_output=True,
                             text=True, cwd=ROOT, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr

    expected, got = rows(tmp_path / "full"), rows(out)
    assert [r["step"] for r in got] == [r["step"] for r in expected]      # once each, in order
    assert got == expected
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    want, have = mlflow_history(client, tmp_path / "full"), mlflow_history(client, out)
    assert have.keys() == want.keys()
    for k in want:
        assert have[k] == want[k], k
