"""One writer per output folder (issue 19, item 2): a second `chorus shard` on the same --out is
refused with exit 2 naming the holder (host, pid), the first finishes with the bytes of a single
run, and a lock left by a killed writer is taken over."""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import yaml

from chorus.data import read_manifest, shard
from chorus.folder_lock import LOCK_NAME, FolderLock, FolderLockedError, read_holder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def card_file(tmp_path, limit):
    with open(os.path.join(ROOT, "datasets", "ndigits.yaml")) as f:
        card = yaml.safe_load(f)
    card["options"]["limit"] = limit
    path = tmp_path / "card.yaml"
    path.write_text(yaml.safe_dump(card))
    return str(path)


def cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "chorus.cli", "shard", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def files(folder):
    return {n: (folder / n).read_bytes() for n in sorted(os.listdir(folder))}


def test_second_writer_is_refused_naming_the_holder_and_the_first_finishes_unharmed(tmp_path):
    card = card_file(tmp_path, 120)
    single = tmp_path / "single"
    shard(card, None, str(single), workers=1, shard_size_mb=0.2, progress=False)
    out = tmp_path / "out"
    args = (card, "--out", str(out), "--workers", "1", "--shard-size", "0.2", "--quiet")
    first = cli(*args)
    deadline = time.time() + 60
    while not (out / LOCK_NAME).exists() or not read_holder(str(out)):
        assert time.time() < deadline and first.poll() is None, first.stderr.read()
        time.sleep(0.005)
    os.kill(first.pid, signal.SIGSTOP)          # certainly still writing while the second starts
    try:
        second = cli(*args)
        assert second.wait(timeout=60) == 2
        message = second.stderr.read()
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert f"pid {first.pid} on host {socket.gethostname()}" in message, message
    assert str(out) in message and "Traceback" not in message
    assert first.wait(timeout=120) == 0, first.stderr.read()
    assert files(out) == files(single)          # byte-identical, and no lock file left


def test_a_lock_left_by_a_killed_writer_is_taken_over(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from chorus.folder_lock import FolderLock; "
        f"FolderLock({str(out)!r}, 'test').acquire(); print('held', flush=True); time.sleep(600)")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(FolderLockedError, match=f"pid {holder.pid} on host"):
        FolderLock(str(out)).acquire()
    holder.kill()
    holder.wait()
    assert read_holder(str(out))["pid"] == holder.pid           # the dead holder's record stays
    card = card_file(tmp_path, 40)
    proc = cli(card, "--out", str(out), "--quiet")
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    assert read_manifest(str(out))["splits"]["train"]["num_samples"] > 0
    assert not (out / LOCK_NAME).exists()


def test_lock_in_one_process_refuses_a_second_holder_and_releases_cleanly(tmp_path):
    with FolderLock(str(tmp_path), purpose="first") as lock:
        assert lock.held and read_holder(str(tmp_path))["pid"] == os.getpid()
        with pytest.raises(FolderLockedError) as info:
            FolderLock(str(tmp_path)).acquire()
        assert info.value.holder["purpose"] == "first"
    assert not (tmp_path / LOCK_NAME).exists()
    with FolderLock(str(tmp_path)):                   # free again
        pass
