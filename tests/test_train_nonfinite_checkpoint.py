"""Issue 18, item 1: after a NaN/inf stop, the "last good checkpoint" named is one whose parameters AND
buffers (BatchNorm running_var included) are all finite, read back from its model.pt; every checkpoint
saved after it records ``finite: false`` and really holds a non-finite tensor."""
import os
import re
import subprocess
import sys

import torch

from chorus.train.checkpoint import list_checkpoints, load_model_weights, read_state
from test_train_support import ROOT, env, ndigits_shards, tiny

QUICKSTART = os.path.join(ROOT, "recipes", "quickstart.yaml")


def finite(weights: dict) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in weights.values() if v.is_floating_point())


def test_nan_stop_names_a_checkpoint_with_finite_parameters_and_buffers(tmp_path_factory, tmp_path):
    shards = ndigits_shards(tmp_path_factory)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "chorus.cli", "train", QUICKSTART,
           *tiny(shards, str(out), tmp_path, "optim.lr=1e6", "train.checkpoint_every=4", "train.keep_last=2",
                 "tracking.enabled=false")]
    p = subprocess.run(cmd, env=env(), capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 3, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    m = re.search(r"Last good checkpoint \(finite parameters and buffers\): (\S+)", p.stderr)
    assert m, p.stderr[-2000:]
    saved = list_checkpoints(str(out / "checkpoints"))
    assert saved, "the run saved no checkpoint"
    if m.group(1).startswith("none"):
        assert not any(finite(load_model_weights(c)) for c in saved)
        return
    good = m.group(1)
    assert finite(load_model_weights(good)), f"{good} holds non-finite parameters or buffers"
    assert read_state(good)["finite"] is True
    later = [c for c in saved if c > good]
    assert later, "lr=1e6 should leave broken checkpoints after the good one (the issue's case)"
    for c in later:                           # kept by keep_last, yet recorded (and really) broken
        assert read_state(c)["finite"] is False and not finite(load_model_weights(c)), c
