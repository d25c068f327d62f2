"""Shards under fault: SIGKILL of `chorus shard` (resume writes only what is missing and gives the same
bytes), and corrupt shard folders -- a truncated shard, a flipped bit in a sample and in a tar header,
a missing manifest -- found by `chorus shard --verify` and refused by `chorus train` with a message
naming the shard (and key) and exit code 2, never a traceback."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from runs import kill_when, train_args
from test_train_support import ROOT, env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def card(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("card")
    with open(os.path.join(ROOT, "datasets", "ndigits.yaml")) as f:
        data = yaml.safe_load(f)
    data["options"]["limit"] = 300
    path = tmp / "ndigits-300.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def shard_args(card, out):
    return ["shard", card, "--out", str(out), "--workers", "1", "--shard-size", "0.25", "--quiet"]


def chorus(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "chorus.cli", *args], env=env(), cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def reference(card, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "shards"
    done = chorus(*shard_args(card, out))
    assert done.returncode == 0, done.stderr
    return out


def _progress(out):
    with open(out / ".progress.json") as f:
        return json.load(f)


def _tars(out):
    return sorted(n for n in os.listdir(out) if n.endswith(".tar")) if os.path.isdir(out) else []


def test_sigkill_of_chorus_shard_then_rerun_writes_only_what_is_missing(card, reference, tmp_path, fault_record):
    out = tmp_path / "shards"
    assert kill_when(shard_args(card, out), lambda: len(_tars(out)) >= 3, poll_s=0.002)
    # "done" is what .progress.json records: the kill can land after a shard's rename and before its
    # record, and such a shard is written again (same bytes, checked below)
    recorded = [d["name"] for names in _progress(out)["done"].values() for d in names]
    assert recorded and set(recorded) <= set(_tars(out))
    done_before = {n: os.stat(out / n).st_mtime_ns for n in recorded}
    assert not (out / "manifest.json").exists() and len(done_before) < len(_tars(reference))
    again = chorus(*shard_args(card, out))
    assert again.returncode == 0, again.stderr
    assert {n: os.stat(out / n).st_mtime_ns for n in done_before} == done_before      # not redone
    assert _tars(out) == _tars(reference)
    for name in _tars(reference) + ["manifest.json"]:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name     # same shards
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]
    assert chorus("shard", "--verify", str(out)).returncode == 0
    fault_record("SIGKILL chorus shard -> rerun", 1, 1, 0, note=f"{len(done_before)} finished shards kept")


def _damage(kind, folder):
    """Damage the copy ``folder``; returns the shard file named in the errors (None: the manifest)."""
    name = sorted(n for n in os.listdir(folder) if n.startswith("train-") and n.endswith(".tar"))[0]
    path = folder / name
    data = bytearray(path.read_bytes())
    if kind == "truncated":
        path.write_bytes(bytes(data[: len(data) // 2 + 100]))
    elif kind == "bit flip in a sample":
        data[512 + 4000] ^= 0x10                      # inside the first member's payload
        path.write_bytes(bytes(data))
    elif kind == "bit flip in a tar header":
        data[20] ^= 0x01                              # the first member's name: its header checksum fails
        path.write_bytes(bytes(data))
    else:
        os.remove(folder / "manifest.json")
        return None
    return name


@pytest.mark.parametrize("kind", ["truncated", "bit flip in a sample", "bit flip in a tar header", "missing manifest"])
def test_corrupt_shards_are_found_by_verify_and_named_by_train(kind, reference, tmp_path, fault_record):
    folder = tmp_path / "copy"
    shutil.copytree(reference, folder)
    name = _damage(kind, folder)
    checked = chorus("shard", "--verify", str(folder))
    assert checked.returncode != 0, checked.stdout
    assert "Traceback" not in checked.stderr
    assert (name or "manifest.json") in checked.stderr + checked.stdout
    trained = chorus(*train_args(str(folder), tmp_path / "run", tmp_path, "train.epochs=1"))
    assert "Traceback" not in trained.stderr, trained.stderr[-3000:]
    if kind == "bit flip in a sample":
        # event payloads carry no checksum of their own: the reader may accept the flipped value;
        # --verify (sha256 against the manifest) is what finds it
        assert trained.returncode in (0, 2), trained.stderr[-2000:]
    else:
        assert trained.returncode == 2, trained.stderr[-3000:]
        assert (name or "manifest.json") in trained.stderr
        if kind == "truncated":
            assert re.search(r"member 's\d+\.", trained.stderr)       # the sample key that was cut
        elif kind == "bit flip in a tar header":
            assert "at byte 0" in trained.stderr                       # where: no key can be read there
    fault_record(f"corrupt shards: {kind}", 1, 1, 0, note="found by --verify; train exit "
                 f"{trained.returncode}")
