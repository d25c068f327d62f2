"""The `chorus study` driver stopped twice while its second pair trains as a Ray trial (issue 16.2),
both in one study so the suite trains it once:

1. Ctrl+C (SIGINT) after the pair's first checkpoint: Ray asks the trial to stop and the pair is
   interrupted -- not ended early as if finished -- so the command exits 130 with the parent run and the
   pair's child KILLED;
2. SIGKILL of the `--resume` driver after the pair has written a checkpoint of its own;
3. `--resume` again: it does not train the finished pair again, resumes the interrupted one from its
   checkpoint in a Ray worker to its last epoch, keeps exactly one MLflow child per pair (the interrupted
   pair's child continued through both stops, no step logged twice) and first stops what the killed
   driver's local Ray instance left.

Real Ray (started by each driver), real MLflow (sqlite), a tiny 2-arm x 1-seed study."""
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


def _wait(proc, ready, seconds=300):
    """Poll ``ready()`` while ``proc`` runs; True when it held before the deadline."""
    deadline = time.time() + seconds
    while proc.poll() is None and time.time() < deadline:
        if ready():
            return True
        time.sleep(0.02)
    return False


def _checkpoints(pair):
    folder = pair / "checkpoints"
    return set(os.listdir(folder)) if folder.is_dir() else set()


def test_driver_sigint_then_sigkill_mid_pair_then_resume_skips_the_finished_pair_one_child_per_pair(
        tmp_path_factory, tmp_path, fault_record):
    from mlflow.tracking import MlflowClient

    path = _study(tmp_path, ndigits_shards(tmp_path_factory))
    folder = tmp_path / "studies" / "kill"
    first, second = folder / "vanilla" / "seed_0", folder / "mps" / "seed_0"
    cmd = [sys.executable, "-m", "chorus.cli", "study", path, "progress=false"]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")

    def children(parent_id):
        exp = client.get_run(parent_id).info.experiment_id
        return {k.data.tags["chorus.study.pair"]: k for k in
                client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent_id}'")}

    # 1. SIGINT after the second pair's first checkpoint
    proc = subprocess.Popen(cmd, env=env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    caught = _wait(proc, lambda: bool(_checkpoints(second)) and (first / "per_timestep.json").is_file())
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=120)[0]
    assert caught and proc.returncode == 130, out[-3000:]
    assert "interrupted; continue with --resume" in out
    # not ended early as if finished (Ray stopped the trial at its next report, or ended its worker first)
    assert not (second / "summary.json").exists() and "error" not in _json(second / "ray_trial.json")
    parent_id = _json(folder / "study_state.json")["mlflow_run_id"]
    assert client.get_run(parent_id).info.status == "KILLED"
    assert children(parent_id)["mps/seed_0"].info.status == "KILLED"
    finished = {n: os.path.getmtime(first / n) for n in ("summary.json", "per_timestep.json", "ray_trial.json")}
    child_before = _json(second / "run.json")["mlflow_run_id"]
    at_sigint = _checkpoints(second)

    # 2. SIGKILL of the resuming driver after the pair wrote a checkpoint of its own
    log = open(tmp_path / "driver.log", "w")
    proc = subprocess.Popen(cmd + ["--resume"], env=env(PYTHONUNBUFFERED="1"), cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT)
    caught = _wait(proc, lambda: bool(_checkpoints(second) - at_sigint) and not (second / "summary.json").exists())
    ray_folder = ray_folder_of(proc.pid)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, open(tmp_path / "driver.log").read()[-3000:]
    assert caught, "the second pair was not caught between a checkpoint of the resumed run and its end"
    time.sleep(1)
    assert ray_folder and os.path.isdir(ray_folder)
    left_behind = processes_of(ray_folder)          # what the dead instance left running (reported below)

    # 3. --resume finishes the study
    resumed = subprocess.run(cmd + ["--resume"], env=env(), cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "trained 1, skipped 1 finished, failed 0" in resumed.stderr
    assert f"dead driver pid {proc.pid}" in resumed.stderr            # the killed instance's leftovers
    assert not os.path.exists(ray_folder) and processes_of(ray_folder) == []
    assert {n: os.path.getmtime(first / n) for n in finished} == finished     # the finished pair not redone
    trial = _json(second / "ray_trial.json")
    assert trial["resumed_from"] and os.path.dirname(trial["resumed_from"]) == str(second / "checkpoints")
    assert trial["pid"] != trial["driver_pid"] and trial["experiment"].endswith(os.path.join("ray", "call_3"))
    assert (folder / "ray" / "call_3" / "mps-seed_0").is_dir()
    assert not (folder / "ray" / "call_3" / "vanilla-seed_0").exists()
    epochs = [json.loads(x).get("epoch") for x in open(second / "metrics.jsonl")]
    assert max(e for e in epochs if e is not None) == 12                 # trained to its last epoch

    kids = children(parent_id)
    assert sorted(kids) == ["mps/seed_0", "vanilla/seed_0"]            # one child per pair
    assert all(k.info.status == "FINISHED" for k in kids.values())
    assert client.get_run(parent_id).info.status == "FINISHED"
    rerun = kids["mps/seed_0"]
    assert rerun.info.run_id == child_before                            # the interrupted child continued
    assert rerun.data.tags["chorus.tune.trial_id"] == trial["trial_id"]
    steps = [m.step for m in client.get_metric_history(rerun.info.run_id, "train/loss")]
    assert steps == sorted(set(steps)), "a step logged twice in the resumed pair's child"
    assert json.load(open(folder / "study.json"))["missing"] == []
    fault_record("SIGINT chorus study driver (mid-pair) -> --resume", 1, 1, 0)
    fault_record("SIGKILL chorus study driver (mid-pair) -> --resume", 1, 1, 0,
                 note=f"{len(left_behind)} Ray process(es) outlived the driver, all stopped by the resume")
