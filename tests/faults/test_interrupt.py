"""SIGTERM (Slurm/Kubernetes before a kill) and SIGINT (Ctrl+C) mid-run: a clean stop at the next safe
point with a resumable checkpoint, no traceback, exit 143/130, and a resume that ends bit-identical to
the run left alone (issue 18.11, 13.1)."""
import os
import signal
import subprocess
import time

import pytest

from runs import command, differing, final_weights, run, step_of, train_args
from test_train_support import ROOT, ndigits_shards

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_stops_cleanly_with_a_resumable_checkpoint(sig, code, tmp_path_factory, tmp_path, fault_record):
    shards = ndigits_shards(tmp_path_factory)
    ref = tmp_path / "reference"
    assert run(train_args(shards, ref, tmp_path, "train.checkpoint_every=0")).returncode == 0
    out = tmp_path / "run"
    args = train_args(shards, out, tmp_path, "train.checkpoint_every=0")
    cmd, e = command(args)
    proc = subprocess.Popen(cmd, env=e, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while proc.poll() is None and not ((out / "metrics.jsonl").exists()
                                       and len((out / "metrics.jsonl").read_text().splitlines()) >= 3):
        time.sleep(0.05)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == code, stderr[-2000:]
    assert "Traceback" not in stderr
    assert "--resume" in stderr
    assert step_of(out) > 0                                    # a checkpoint at the stop
    done = run(args + ["--resume"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert differing(final_weights(ref), final_weights(out)) == []
    fault_record(f"{signal.Signals(sig).name} chorus train -> clean stop, resume", 1, 1, 0)
