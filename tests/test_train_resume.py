"""Exact resume (torchtune-style): a run killed with SIGKILL at a random step and resumed with
--resume ends with the same parameters, bit for bit, as the same run left alone. The runs use TASG
pair dropping and data augmentation, so RNG states and the data position must all be restored."""
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from chorus.train.checkpoint import latest_checkpoint, load_model_weights, read_state
from test_train_support import ROOT, env, ndigits_shards, tiny

QUICKSTART = os.path.join(ROOT, "recipes", "quickstart.yaml")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return ndigits_shards(tmp_path_factory)


def train_cmd(shards, out, tmp, *extra):
    return [sys.executable, "-m", "chorus.cli", "train", QUICKSTART,
            *tiny(shards, str(out), tmp, "train.checkpoint_every=1", "train.keep_last=2", "loss.p_drop=0.3",
                  "data.augment=true", "tracking.enabled=false", *extra)]


@pytest.mark.slow
def test_sigkill_at_random_step_then_resume_equals_uninterrupted(shards, tmp_path):
    full = subprocess.run(train_cmd(shards, tmp_path / "full", tmp_path), env=env(), capture_output=True,
                          text=True, cwd=ROOT, timeout=600)
    assert full.returncode == 0, full.stderr[-3000:]
    final = latest_checkpoint(str(tmp_path / "full" / "checkpoints"))
    total = read_state(final)["step"]
    kill_at = random.Random().randint(2, total - 3)

    proc = subprocess.Popen(train_cmd(shards, tmp_path / "killed", tmp_path), env=env(), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = tmp_path / "killed" / "checkpoints" / f"step_{kill_at:09d}"
    deadline = time.time() + 600
    while proc.poll() is None and not marker.exists() and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, f"the run ended before step {kill_at}"
    left = latest_checkpoint(str(tmp_path / "killed" / "checkpoints"))
    assert read_state(left)["step"] < total, (kill_at, left)

    resumed = subprocess.run(train_cmd(shards, tmp_path / "killed", tmp_path) + ["--resume"], env=env(),
                             capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr
    again = latest_checkpoint(str(tmp_path / "killed" / "checkpoints"))
    assert read_state(again)["step"] == total
    a, b = load_model_weights(final), load_model_weights(again)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after SIGKILL at step ~{kill_at} and resume"
