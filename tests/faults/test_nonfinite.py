"""A NaN loss (issue 18.1's own case: quickstart at optim.lr=1e6) and an exploding loss (SGD at
lr=1e8, the loss growing until it overflows): `chorus train` stops at that step with one line naming
it and the last good checkpoint (exit 3, no traceback); that checkpoint really is good -- every
parameter and buffer (BatchNorm running statistics included) finite -- or the line says none is."""
import re

import pytest
import torch

from chorus.train.checkpoint import load_model_weights, read_state
from runs import run, train_args
from test_train_support import ndigits_shards

pytestmark = pytest.mark.slow
CASES = {"NaN loss (adamw lr=1e6)": ["optim.lr=1e6"],
         "exploding loss (sgd lr=1e8)": ["optim.name=sgd", "optim.lr=1e8"]}
_DONE: dict = {}


def _stopped(case, tmp_path_factory):
    """Run the case once per session: (stderr's last line, step of the stop, named checkpoint or None)."""
    if case not in _DONE:
        shards = ndigits_shards(tmp_path_factory)
        tmp = tmp_path_factory.mktemp("nonfinite")
        done = run(train_args(shards, tmp / "run", tmp, "train.checkpoint_every=4", *CASES[case]))
        assert done.returncode == 3, done.stderr[-3000:]
        assert "Traceback" not in done.stderr
        line = done.stderr.strip().splitlines()[-1]
        step = re.search(r"at step (\d+)", line)
        assert step and "non-finite loss" in line, line
        named = re.search(r"[Ll]ast good checkpoint(?: \([^)]*\))?: (\S+)", line)
        _DONE[case] = (line, int(step.group(1)), named.group(1).rstrip(".;,") if named else None)
    return _DONE[case]


@pytest.mark.parametrize("case", list(CASES))
def test_non_finite_loss_stops_with_one_line_naming_the_step(case, tmp_path_factory, fault_record):
    line, step, path = _stopped(case, tmp_path_factory)
    if path is None:
        assert "no good checkpoint" in line.lower() or "none" in line.lower(), line
    else:
        assert read_state(path)["step"] < step
    fault_record(case, 1, 1, 0, note=line[:100])


@pytest.mark.parametrize("case", list(CASES))
def test_the_checkpoint_called_good_is_finite(case, tmp_path_factory):
    _, _, path = _stopped(case, tmp_path_factory)
    if path is None:
        return
    bad = [k for k, v in load_model_weights(path).items()
           if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    assert bad == [], f"{path} is called good but holds non-finite {bad[:4]}"
