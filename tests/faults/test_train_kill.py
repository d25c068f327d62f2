"""SIGKILL of `chorus train` at several points, inside a checkpoint write among them, then `--resume`:
the parameters (and buffers) at the end are bit-identical to the same run left alone, in one process
and in 2 processes under `accelerate launch` (gloo). Each kill is timed on what the run writes:
its first metrics (before any checkpoint), a given checkpoint, a `.tmp-step_*` folder (the write in
progress: Accelerate's state is in, the rename is not done), and right after a resume."""
import os

import pytest

from runs import checkpoints, differing, final_weights, kill_when, run, step_of, train_args
from test_train_support import ndigits_shards

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return ndigits_shards(tmp_path_factory)


def _reference(shards, tmp_path, nproc):
    out = tmp_path / "reference"
    done = run(train_args(shards, out, tmp_path), nproc)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _in_write(out):
    return lambda: any(n.startswith(".tmp-step_") for n in checkpoints(out))


def _kill_chain(shards, tmp_path, nproc, points, fault_record, case):
    ref = _reference(shards, tmp_path, nproc)
    total = step_of(ref)
    out = tmp_path / "killed"
    args = train_args(shards, out, tmp_path)
    metrics = out / "metrics.jsonl"
    tried = recovered = 0
    for name, ready in points(out, total, metrics):
        first = tried == 0
        killed = kill_when(args if first else args + ["--resume"], ready, nproc)
        assert killed, f"{name}: the run ended before the kill"
        tried += 1
        if name == "inside a checkpoint write":
            left = [n for n in checkpoints(out) if n.startswith(".tmp-")]
            assert left, "killed after the write had completed"                # it really was mid-write
        assert step_of(out) < total
        recovered += 1
    done = run(args + ["--resume"], nproc)
    assert done.returncode == 0, done.stderr[-3000:]
    assert step_of(out) == total
    bad = differing(final_weights(ref), final_weights(out))
    assert bad == [], f"not bit-identical after {tried} kills: {bad[:5]}"
    assert not [n for n in checkpoints(out) if n.startswith(".tmp-")]           # the half write is gone
    fault_record(case, tried, recovered, 0)


def _lines(path):
    return len(open(path).read().splitlines()) if os.path.isfile(path) else 0


def test_sigkill_at_five_points_single_process(shards, tmp_path, fault_record):
    def points(out, total, metrics):
        yield "before the first checkpoint", lambda: _lines(metrics) >= 1 and not checkpoints(out)
        yield "at a checkpoint", lambda: step_of(out) >= 6
        yield "inside a checkpoint write", _in_write(out)
        base = _lines(metrics)
        yield "right after the resume", lambda: _lines(metrics) > base
        yield "in the second epoch", lambda: step_of(out) >= total - 4
    _kill_chain(shards, tmp_path, 1, points, fault_record, "SIGKILL chorus train, 1 process")


def test_sigkill_two_processes(shards, tmp_path, fault_record):
    def points(out, total, metrics):
        yield "at a checkpoint", lambda: step_of(out) >= 4
        yield "inside a checkpoint write", _in_write(out)
    _kill_chain(shards, tmp_path, 2, points, fault_record, "SIGKILL accelerate launch, 2 processes")
