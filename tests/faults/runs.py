"""Helpers of the fault suite (no tests here): a tiny `chorus train` command, real processes started
in their own session (so a kill reaches every rank), watchers that time a kill on what the run
writes, and the final weights of a run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import torch

from chorus.train.checkpoint import latest_checkpoint, load_model_weights, read_state
from test_train_support import ACCELERATE, ROOT, env, tiny

QUICKSTART = os.path.join(ROOT, "recipes", "quickstart.yaml")


def train_args(shards, out, tmp, *extra) -> list[str]:
    """`chorus train` arguments of a tiny run: a checkpoint every 2 steps, TASG pair dropping and
    augmentation on (so RNG states and the data position must all come back), MLflow off."""
    return ["train", QUICKSTART, *tiny(shards, str(out), tmp, "train.checkpoint_every=2", "train.keep_last=2",
                                       "loss.p_drop=0.3", "data.augment=true", "tracking.enabled=false",
                                       "diagnostics.every=0", *extra)]


def command(args: list[str], nproc: int = 1, port: int = 29531) -> tuple[list[str], dict]:
    if nproc == 1:
        return [sys.executable, "-m", "chorus.cli", *args], env()
    return ([ACCELERATE, "launch", "--multi_gpu", "--num_processes", str(nproc), "--num_machines", "1",
             "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
             "-m", "chorus.cli", *args], env(ACCELERATE_USE_CPU="1"))


def run(args, nproc=1, timeout=600, **kw) -> subprocess.CompletedProcess:
    cmd, e = command(args, nproc)
    return subprocess.run(cmd, env=e, cwd=ROOT, capture_output=True, text=True, timeout=timeout, **kw)


def kill_when(args, ready, nproc=1, timeout=300, poll_s=0.001, **kw) -> bool:
    """Start the command and SIGKILL its whole process group the moment ``ready()`` is true; returns
    whether it was killed (False: it ended first)."""
    cmd, e = command(args, nproc)
    proc = subprocess.Popen(cmd, env=e, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, **kw)
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        if ready():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(poll_s)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return False


def checkpoints(out) -> list[str]:
    root = os.path.join(str(out), "checkpoints")
    return sorted(os.listdir(root)) if os.path.isdir(root) else []


def step_of(out) -> int:
    ck = latest_checkpoint(os.path.join(str(out), "checkpoints"))
    return read_state(ck)["step"] if ck else 0


def final_weights(out) -> dict:
    return load_model_weights(latest_checkpoint(os.path.join(str(out), "checkpoints")))


def differing(a: dict, b: dict) -> list[str]:
    """Names of tensors that are not bit-identical (every key of both)."""
    assert a.keys() == b.keys()
    return [k for k in a if not torch.equal(a[k], b[k])]


def ray_folder_of(pid: int):
    """The local Ray instance folder (/tmp/chorus-ray-*) that driver ``pid`` started, or None."""
    import glob
    import json

    from chorus.tune.ray_leftovers import OWNER_FILE

    for folder in glob.glob("/tmp/chorus-ray-*"):
        try:
            with open(os.path.join(folder, OWNER_FILE)) as f:
                if json.load(f)["pid"] == pid:
                    return folder
        except (OSError, ValueError):
            pass
    return None
