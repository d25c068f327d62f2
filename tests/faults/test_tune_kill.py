"""SIGKILL of the `chorus tune` driver while a trial runs, before that trial's first checkpoint
(issue 19.1, issue 13.1): `--resume` finishes the search without rerunning the finished trial, with
exactly one MLflow child per trial, and it first stops what the dead driver's local Ray instance left
(its agents, its /tmp/chorus-ray-* folder). Real Ray (started by the driver), real MLflow (sqlite)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from chorus.tune.ray_leftovers import processes_of
from runs import ray_folder_of
from test_train_support import ROOT, env, ndigits_shards

SEARCH = os.path.join(ROOT, "recipes", "search", "quickstart_gamma_alpha.yaml")
pytestmark = pytest.mark.slow


def _lines(path):
    return open(path).read().splitlines() if os.path.isfile(path) else []


def test_driver_sigkill_mid_trial_then_resume_one_child_per_trial_and_no_ray_leftovers(
        tmp_path_factory, tmp_path, fault_record):
    shards = ndigits_shards(tmp_path_factory)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [f"fixed.data.shards={shards}", f"storage_path={tmp_path / 'tune'}", f"tracking.uri={uri}",
            "space.loss.gamma=grid [0, 1]", "space.neuron.alpha_init=grid [0.5]", "fixed.train.epochs=2",
            "fixed.data.size=16", "fixed.data.T=3", "fixed.model.args.width=0.5", "fixed.train.log_every=1",
            "fixed.diagnostics.every=0", "scheduler.type=fifo", "max_concurrent=1"]
    cmd = [sys.executable, "-m", "chorus.cli", "tune", SEARCH, *args, "--num-cpus", "2"]
    exp = tmp_path / "tune" / "quickstart_gamma_alpha"
    log = open(tmp_path / "driver.log", "w")
    proc = subprocess.Popen(cmd, env=env(PYTHONUNBUFFERED="1"), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    def trials():
        return sorted(d for d in os.listdir(exp) if (exp / d / "run").is_dir()) if exp.is_dir() else []

    killed_in = None
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
        names = trials()
        if len(names) >= 2 and len(_lines(exp / names[0] / "result.json")) == 2:
            second = exp / names[1]
            if _lines(second / "run" / "metrics.jsonl") and not _lines(second / "result.json"):
                killed_in = names[1]
                break
        time.sleep(0.05)
    folder = ray_folder_of(proc.pid)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, open(tmp_path / "driver.log").read()[-3000:]
    assert killed_in, "the second trial was not caught before its first report"
    assert folder and os.path.isdir(folder)
    first = trials()[0]
    first_results = _lines(exp / first / "result.json")
    time.sleep(2)
    left_behind = processes_of(folder)          # what the dead instance left running (reported below)

    resumed = subprocess.run(cmd + ["--resume"], env=env(), cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"dead driver pid {proc.pid}" in resumed.stderr
    assert not os.path.exists(folder) and processes_of(folder) == []
    assert _lines(exp / first / "result.json") == first_results          # the finished trial is not rerun

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    state = json.load(open(exp / "chorus_search.json"))
    parent = client.get_run(state["parent_run_id"])
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    ids = sorted(c.data.tags["chorus.tune.trial_id"] for c in children)
    assert ids == sorted(trials()), ids                                   # one child per trial
    assert all(c.info.status == "FINISHED" for c in children)
    assert all(c.data.tags.get("chorus.tune.status") == "completed" for c in children)
    rerun = next(c for c in children if c.data.tags["chorus.tune.trial_id"] == killed_in)
    steps = [m.step for m in client.get_metric_history(rerun.info.run_id, "train/loss")]
    assert steps == sorted(set(steps)), "a step logged twice in the rerun trial's child"
    assert parent.info.status == "FINISHED"
    fault_record("SIGKILL chorus tune driver (mid-trial) -> --resume", 1, 1, 0,
                 note=f"{len(left_behind)} Ray process(es) outlived the driver, all stopped by the resume")
