"""`chorus shard`: reproducible shards, resume after a kill, --verify, refusing to mix shard sets."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from chorus.data import DataError, read_manifest, shard, verify

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def card_file(tmp_path, limit, name="card.yaml"):
    with open(os.path.join(ROOT, "datasets", "ndigits.yaml")) as f:
        card = yaml.safe_load(f)
    card["options"]["limit"] = limit
    path = tmp_path / name
    path.write_text(yaml.safe_dump(card))
    return str(path)


def cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "chorus.cli", "shard", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def shard_files(folder):
    manifest = read_manifest(folder)
    return {s: list(zip(i["shards"], i["counts"], i["sha256"])) for s, i in
            manifest["splits"].items()}


@pytest.mark.slow
def test_killed_then_resumed_run_equals_uninterrupted_run(tmp_path):
    card = card_file(tmp_path, 200)
    clean = tmp_path / "clean"
    shard(card, None, str(clean), workers=2, shard_size_mb=0.2, progress=False)
    killed = tmp_path / "killed"
    proc = cli(card, "--out", str(killed), "--workers", "2", "--shard-size", "0.2", "--quiet",
               start_new_session=True)
    progress = killed / ".progress.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        if progress.exists():
            try:
                done = json.loads(progress.read_text())["done"]
            except (json.JSONDecodeError, OSError):
                continue
            if sum(len(v) for v in done.values()) >= 3:
                break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "manifest.json").exists(), "the run finished before it could be killed"
    out = cli(card, "--out", str(killed), "--workers", "1", "--shard-size", "0.2", "--quiet")
    assert out.wait(timeout=300) == 0, out.stderr.read()
    assert shard_files(killed) == shard_files(clean)
    assert not [n for n in os.listdir(killed) if n.endswith(".tmp") or n.startswith(".progress")]
    assert verify(str(killed)) == []


def test_same_card_gives_identical_bytes_and_verify_catches_tampering(tmp_path):
    card = card_file(tmp_path, 60)
    a = shard(card, None, str(tmp_path / "a"), workers=2, shard_size_mb=0.5, progress=False)
    b = shard(card, None, str(tmp_path / "b"), workers=1, shard_size_mb=0.5, progress=False)
    assert shard_files(a["folder"]) == shard_files(b["folder"])
    assert sum(a["splits"][s]["num_samples"] for s in a["splits"]) == 60
    assert a["stats"]["bytes_per_event"] == 7.0
    again = shard(card, None, str(tmp_path / "a"), workers=1, shard_size_mb=0.5, progress=False)
    assert again["fingerprint"] == a["fingerprint"]          # finished set: nothing rewritten
    name = a["splits"]["train"]["shards"][0]
    with open(os.path.join(a["folder"], name), "r+b") as f:
        f.seek(2000)
        f.write(b"\x00garbage")
    problems = verify(a["folder"])
    assert problems and name in problems[0] and "sha256" in problems[0]
    proc = cli("--verify", a["folder"])
    assert proc.wait(timeout=60) == 1 and name in proc.stderr.read()


def test_other_card_into_a_finished_folder_is_refused_and_changes_nothing(tmp_path):
    out = tmp_path / "out"
    shard(card_file(tmp_path, 40), None, str(out), progress=False)
    before = {n: (out / n).read_bytes() for n in os.listdir(out)}
    with pytest.raises(DataError, match="another card"):
        shard(card_file(tmp_path, 41, "other.yaml"), None, str(out), progress=False)
    assert {n: (out / n).read_bytes() for n in os.listdir(out)} == before


def test_bad_cards_name_the_key(tmp_path):
    path = tmp_path / "bad.yaml"
    card = yaml.safe_load(open(os.path.join(ROOT, "datasets", "ndigits.yaml")))
    path.write_text(yaml.safe_dump({**card, "sensor_sise": [1, 2]}))
    with pytest.raises(DataError, match="sensor_sise"):
        shard(str(path), None, str(tmp_path / "o"), progress=False)
    path.write_text(yaml.safe_dump({**card, "split": {"policy": "7-ways"}}))
    with pytest.raises(DataError, match="7-ways"):
        shard(str(path), None, str(tmp_path / "o"), progress=False)
    proc = cli(str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "o"))
    assert proc.wait(timeout=60) == 1 and "missing.yaml" in proc.stderr.read()
