"""Disk full during a checkpoint write. There is no root here to mount a small tmpfs, so the child
process runs under RLIMIT_FSIZE (set in ``preexec_fn``, SIGXFSZ ignored): any write past the limit fails
with EFBIG exactly as a full disk fails with ENOSPC. A run killed after its checkpoint at step 4 is
resumed under the limit: its next checkpoint write fails -> a clear one-line error, exit 2, the step-4
checkpoint intact; resumed again with the limit lifted ("space freed"), it ends bit-identical to the
run left alone."""
import resource
import signal

import pytest

from runs import checkpoints, differing, final_weights, kill_when, run, step_of, train_args
from test_train_support import ndigits_shards

pytestmark = pytest.mark.slow
LIMIT = 96 * 1024            # bytes per file: the model's weights fit, the optimizer state does not


def _limited():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def test_disk_full_in_a_checkpoint_write_keeps_the_previous_one_and_resumes(tmp_path_factory, tmp_path,
                                                                             fault_record):
    shards = ndigits_shards(tmp_path_factory)
    ref = tmp_path / "reference"
    assert run(train_args(shards, ref, tmp_path)).returncode == 0
    out = tmp_path / "full"
    args = train_args(shards, out, tmp_path)
    assert kill_when(args, lambda: step_of(out) >= 4)
    before = checkpoints(out)
    kept = final_weights(out)
    step = step_of(out)

    starved = run(args + ["--resume"], preexec_fn=_limited)
    assert starved.returncode == 2, starved.stderr[-3000:]
    assert "Traceback" not in starved.stderr, starved.stderr[-3000:]
    err = starved.stderr.strip().splitlines()[-1]
    assert "checkpoint" in err and ("space" in err or "too large" in err), err
    assert step_of(out) == step and differing(final_weights(out), kept) == []     # previous one intact
    assert [n for n in checkpoints(out) if not n.startswith(".")] == [n for n in before if not n.startswith(".")]

    freed = run(args + ["--resume"])
    assert freed.returncode == 0, freed.stderr[-3000:]
    assert differing(final_weights(ref), final_weights(out)) == []
    fault_record("disk full in a checkpoint write (RLIMIT_FSIZE)", 1, 1, 0)
