"""Issue 19, item 2 (run folder): two `chorus train ... --out D` at once -> exactly one runs, the other
exits 2 naming the holder (host, pid) and changes nothing; a lock left by a SIGKILLed run is taken over
by `--resume`, which then finishes with the parameters of a run left alone."""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from chorus.folder_lock import LOCK_NAME, read_holder
from chorus.train.checkpoint import latest_checkpoint, load_model_weights
from test_train_support import ROOT, env, ndigits_shards, tiny

QUICKSTART = os.path.join(ROOT, "recipes", "quickstart.yaml")


def cmd(shards, tmp, out, *extra):
    return [sys.executable, "-m", "chorus.cli", "train", QUICKSTART,
            *tiny(shards, str(tmp / "unused"), tmp, "tracking.enabled=false", "train.checkpoint_every=3"),
            "--out", str(out), *extra]


def wait_for(path, proc, timeout=120):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        assert proc.poll() is None and time.time() < deadline, "the first run never took the folder"
        time.sleep(0.01)


@pytest.mark.slow
def test_second_writer_is_refused_naming_the_holder_and_a_stale_lock_is_taken_over(tmp_path_factory, tmp_path):
    shards = ndigits_shards(tmp_path_factory)
    out = tmp_path / "D"
    first = subprocess.Popen(cmd(shards, tmp_path, out), env=env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    wait_for(out / LOCK_NAME, first)
    first.send_signal(signal.SIGSTOP)        # hold it there: a tiny run could finish (and let go) while the
    try:                                     # second one is still importing torch on a loaded machine
        second = subprocess.run(cmd(shards, tmp_path, out), env=env(), cwd=ROOT, capture_output=True,
                                text=True, timeout=120)
    finally:
        first.send_signal(signal.SIGCONT)
    assert first.poll() is None, "the first run finished before the second started: nothing tested"
    assert second.returncode == 2, second.stderr[-2000:]
    assert "Traceback" not in second.stderr
    assert f"pid {first.pid}" in second.stderr and socket.gethostname() in second.stderr
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-3000:]
    assert not (out / LOCK_NAME).exists()                   # released at the end

    killed = tmp_path / "K"
    proc = subprocess.Popen(cmd(shards, tmp_path, killed), env=env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_for(killed / "checkpoints" / "step_000000003", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert read_holder(str(killed)).get("pid") == proc.pid    # the dead run's record is still there
    resumed = subprocess.run(cmd(shards, tmp_path, killed, "--resume"), env=env(), cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = load_model_weights(latest_checkpoint(str(out / "checkpoints")))
    b = load_model_weights(latest_checkpoint(str(killed / "checkpoints")))
    for k in a:
        assert torch.equal(a[k], b[k]), k
