"""Issue 18, item 11: SIGTERM and SIGINT stop `chorus train` at the next safe point -- a resumable
checkpoint, the MLflow run KILLED, ONE line with the exact command that resumes, exit 143 / 130, no
traceback -- and the printed command finishes the run with the same parameters, bit for bit, as the
run left alone."""
import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest
import torch
from mlflow.tracking import MlflowClient

from chorus.train.checkpoint import latest_checkpoint, load_model_weights, read_state
from test_train_support import ROOT, env, ndigits_shards, tiny

QUICKSTART = os.path.join(ROOT, "recipes", "quickstart.yaml")
EXTRA = ("train.checkpoint_every=4", "loss.p_drop=0.3", "data.augment=true")


def cmd(shards, out, tmp):
    return [sys.executable, "-m", "chorus.cli", "train", QUICKSTART, *tiny(shards, str(out), tmp, *EXTRA)]


def logged_steps(out) -> int:
    path = os.path.join(out, "metrics.jsonl")
    if not os.path.isfile(path):
        return 0
    with open(path) as f:
        return sum(1 for line in f if '"train/loss"' in line)


def start_and_signal(command, out, sig, after_steps):
    proc = subprocess.Popen(command, env=env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while proc.poll() is None and logged_steps(out) < after_steps and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before the signal"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return ndigits_shards(tmp_path_factory)


@pytest.mark.slow
def test_sigterm_stops_at_a_safe_point_and_the_printed_command_resumes_exactly(shards, tmp_path):
    full = subprocess.run(cmd(shards, tmp_path / "full", tmp_path), env=env(), capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert full.returncode == 0, full.stderr[-3000:]
    out = tmp_path / "stopped"
    rc, err = start_and_signal(cmd(shards, out, tmp_path), str(out), signal.SIGTERM, after_steps=6)
    assert rc == 143, err[-3000:]
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "resume with:" in line]
    assert len(lines) == 1, err[-3000:]
    ck = latest_checkpoint(str(out / "checkpoints"))
    stopped_at = read_state(ck)["step"]
    assert f"after step {stopped_at}" in lines[0] and ck in lines[0]
    assert stopped_at >= 6                         # at or after the step the signal came in
    rid = json.load(open(out / "run.json"))["mlflow_run_id"]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    assert client.get_run(rid).info.status == "KILLED"

    words = shlex.split(lines[0].split("resume with: ", 1)[1])
    assert words[:2] == ["chorus", "train"] and "--resume" in words
    resumed = subprocess.run([sys.executable, "-m", "chorus.cli", *words[1:]], env=env(), capture_output=True,
                             text=True, cwd=ROOT, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert client.get_run(rid).info.status == "FINISHED"
    a = load_model_weights(latest_checkpoint(str(tmp_path / "full" / "checkpoints")))
    b = load_model_weights(latest_checkpoint(str(out / "checkpoints")))
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after SIGTERM at step {stopped_at} and resume"


def test_sigint_exits_130_with_one_resume_line_and_no_traceback(shards, tmp_path):
    out = tmp_path / "ctrl-c"
    rc, err = start_and_signal(cmd(shards, out, tmp_path), str(out), signal.SIGINT, after_steps=3)
    assert rc == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert sum("resume with:" in line for line in err.splitlines()) == 1
    assert "SIGINT" in err
    state = read_state(latest_checkpoint(str(out / "checkpoints")))
    assert state["step"] >= 3 and state["finite"] is True
