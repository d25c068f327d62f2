"""Ctrl+C (SIGINT) of the `chorus study` driver while its second pair trains as a Ray trial: Ray asks
the trial to stop, and the pair is interrupted -- not ended early as if finished -- so the command exits
130 with the parent run and the pair's child KILLED, and `--resume` trains only that pair on from its
checkpoint to its last epoch. Real Ray, real MLflow (sqlite), the tiny study of test_study_kill."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from test_study_kill import _json, _study
from test_train_support import ROOT, env, ndigits_shards

pytestmark = pytest.mark.slow


def test_driver_sigint_mid_pair_interrupts_it_and_resume_trains_it_to_its_end(tmp_path_factory, tmp_path,
                                                                               fault_record):
    path = _study(tmp_path, ndigits_shards(tmp_path_factory))
    folder = tmp_path / "studies" / "kill"
    second = folder / "mps" / "seed_0"
    cmd = [sys.executable, "-m", "chorus.cli", "study", path, "progress=false"]
    proc = subprocess.Popen(cmd, env=env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
        if (second / "checkpoints").is_dir() and os.listdir(second / "checkpoints"):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, out[-3000:]
    assert "interrupted; continue with --resume" in out
    # not ended early as if finished (Ray stopped the trial at its next report, or ended its worker first)
    assert not (second / "summary.json").exists() and "error" not in _json(second / "ray_trial.json")

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent_id = _json(folder / "study_state.json")["mlflow_run_id"]

    def children():
        exp = client.get_run(parent_id).info.experiment_id
        return {k.data.tags["chorus.study.pair"]: k for k in
                client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent_id}'")}

    assert client.get_run(parent_id).info.status == "KILLED"
    assert children()["mps/seed_0"].info.status == "KILLED"

    resumed = subprocess.run(cmd + ["--resume"], env=env(), cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "trained 1, skipped 1 finished, failed 0" in resumed.stderr
    assert _json(second / "ray_trial.json")["resumed_from"]
    epochs = [json.loads(x).get("epoch") for x in open(second / "metrics.jsonl")]
    assert max(e for e in epochs if e is not None) == 12                 # trained to its last epoch
    kids = children()
    assert sorted(kids) == ["mps/seed_0", "vanilla/seed_0"] and all(k.info.status == "FINISHED" for k in kids.values())
    assert client.get_run(parent_id).info.status == "FINISHED"
    fault_record("SIGINT chorus study driver (mid-pair) -> --resume", 1, 1, 0)
