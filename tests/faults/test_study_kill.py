"""SIGKILL of the `chorus study` driver while its second pair trains as a Ray trial, after that pair's
first checkpoint (issue 16.2): `--resume` does not train the finished pair again, resumes the
interrupted one from its checkpoint in a Ray worker, keeps exactly one MLflow child per pair (the
interrupted pair's child continued, no step logged twice) and first stops what the dead driver's local
Ray instance left. Real Ray (started by the driver), real MLflow (sqlite), a tiny 2-arm × 1-seed study."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from chorus.tune.ray_leftovers import processes_of
from runs import ray_folder_of
from test_train_support import ROOT, env, ndigits_shards

QUICKSTART = os.path.join(ROOT, "recipes", "quickstart.yaml")
pytestmark = pytest.mark.slow


def _study(tmp, shards):
    fixed = {"data.shards": shards, "data.size": 16, "data.T": 3, "data.batch_size": 16, "model.args.width": 0.5,
             "train.epochs": 2, "neuron.v_threshold": 0.5, "optim.name": "adamw", "optim.lr": 0.005,
             "diagnostics.every": 0, "train.log_every": 1, "tracking.uri": f"sqlite:///{tmp / 'mlflow.db'}"}
    study = {"name": "kill", "recipe": QUICKSTART, "fixed": fixed, "seeds": [0], "out_dir": str(tmp / "studies"),
             "arms": {"vanilla": {"neuron.mps": False, "loss.gamma": 0.0},
                      # more epochs: time to catch it between its first checkpoint and its end
                      "mps": {"neuron.mps": True, "loss.gamma": 0.0, "train.epochs": 12}}}
    path = tmp / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return str(path)


def _json(path):
    with open(path) as f:
        return json.load(f)


def test_driver_sigkill_mid_pair_then_resume_skips_the_finished_pair_one_child_per_pair(
        tmp_path_factory, tmp_path, fault_record):
    shards = ndigits_shards(tmp_path_factory)
    path = _study(tmp_path, shards)
    folder = tmp_path / "studies" / "kill"
    first, second = folder / "vanilla" / "seed_0", folder / "mps" / "seed_0"
    cmd = [sys.executable, "-m", "chorus.cli", "study", path, "progress=false"]
    log = open(tmp_path / "driver.log", "w")
    proc = subprocess.Popen(cmd, env=env(PYTHONUNBUFFERED="1"), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    caught = False
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
        if (first / "per_timestep.json").is_file() and (second / "checkpoints").is_dir() \
                and os.listdir(second / "checkpoints") and not (second / "summary.json").exists():
            caught = True
            break
        time.sleep(0.02)
    ray_folder = ray_folder_of(proc.pid)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, open(tmp_path / "driver.log").read()[-3000:]
    assert caught, "the second pair was not caught between its first checkpoint and its end"
    finished = {n: os.path.getmtime(first / n) for n in ("summary.json", "per_timestep.json", "ray_trial.json")}
    child_before = _json(second / "run.json")["mlflow_run_id"]
    time.sleep(1)
    assert ray_folder and os.path.isdir(ray_folder)
    left_behind = processes_of(ray_folder)          # what the dead instance left running (reported below)

    resumed = subprocess.run(cmd + ["--resume"], env=env(), cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "trained 1, skipped 1 finished, failed 0" in resumed.stderr
    assert f"dead driver pid {proc.pid}" in resumed.stderr            # the killed instance's leftovers
    assert not os.path.exists(ray_folder) and processes_of(ray_folder) == []
    assert {n: os.path.getmtime(first / n) for n in finished} == finished     # the finished pair not redone
    trial = _json(second / "ray_trial.json")
    assert trial["resumed_from"] and os.path.dirname(trial["resumed_from"]) == str(second / "checkpoints")
    assert trial["pid"] != trial["driver_pid"] and trial["experiment"].endswith(os.path.join("ray", "call_2"))
    assert sorted(os.listdir(folder / "ray" / "call_2")) and (folder / "ray" / "call_2" / "mps-seed_0").is_dir()
    assert not (folder / "ray" / "call_2" / "vanilla-seed_0").exists()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent = client.get_run(_json(folder / "study_state.json")["mlflow_run_id"])
    kids = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted((k.data.tags["chorus.study.arm"], k.data.tags["chorus.study.seed"]) for k in kids) == [
        ("mps", "0"), ("vanilla", "0")]                                 # one child per pair
    assert all(k.info.status == "FINISHED" for k in kids) and parent.info.status == "FINISHED"
    rerun = next(k for k in kids if k.data.tags["chorus.study.arm"] == "mps")
    assert rerun.info.run_id == child_before                            # the interrupted child continued
    assert rerun.data.tags["chorus.tune.trial_id"] == trial["trial_id"]
    steps = [m.step for m in client.get_metric_history(rerun.info.run_id, "train/loss")]
    assert steps == sorted(set(steps)), "a step logged twice in the resumed pair's child"
    assert json.load(open(folder / "study.json"))["missing"] == []
    fault_record("SIGKILL chorus study driver (mid-pair) -> --resume", 1, 1, 0,
                 note=f"{len(left_behind)} Ray process(es) outlived the driver, all stopped by the resume")
