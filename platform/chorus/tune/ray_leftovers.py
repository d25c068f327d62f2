"""What a dead ``chorus tune`` driver's local Ray instance leaves behind, and its clean-up.

A local instance lives in its own ``/tmp/chorus-ray-*`` folder (:func:`chorus.tune.cluster.ray_session`),
which holds ``chorus-owner.json``: the driver's host, pid and process start time. When the driver is
killed (SIGKILL, OOM killer) Ray's ``DashboardAgent`` and ``RuntimeEnvAgent`` can outlive it (they
ignore SIGTERM) next to the folder. :func:`clean_dead_instances` -- run by every ``chorus tune`` before
it starts Ray -- finds folders whose owner is a dead process on this host, stops the processes whose
command line names that folder or that hold a file in it open (SIGTERM, then SIGKILL) and removes it. Folders of live drivers,
of other hosts and folders without an owner file (made by something else) are left alone.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import time
from typing import Optional

PREFIX = "chorus-ray-"
OWNER_FILE = "chorus-owner.json"


def _start_ticks(pid: int) -> Optional[int]:
    """The start time of process ``pid`` (clock ticks since boot, /proc/PID/stat field 22), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    return int(text.rsplit(")", 1)[1].split()[19])


def write_owner(folder: str) -> None:
    """Record this process as the owner of the Ray folder ``folder``."""
    pid = os.getpid()
    with open(os.path.join(folder, OWNER_FILE), "w") as f:
        json.dump({"host": socket.gethostname(), "pid": pid, "start_ticks": _start_ticks(pid)}, f)


def owner_alive(owner: dict) -> bool:
    """The owner process still runs (same pid and same start time: a reused pid is not the owner)."""
    pid = int(owner.get("pid", -1))
    if pid <= 0:
        return False
    ticks = _start_ticks(pid)
    return ticks is not None and (owner.get("start_ticks") is None or ticks == owner["start_ticks"])


def _holds_file_in(pid: str, prefix: str) -> bool:
    """Process ``pid`` has a file open under ``prefix`` (Ray 2.60's agents rename their command line to
    ``ray::DashboardAgent``/``ray::RuntimeEnvAgent`` but keep their logs in the session folder open)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(prefix):
                return True
        except OSError:
            continue
    return False


def processes_of(folder: str) -> list[tuple[int, str]]:
    """``(pid, name)`` of this user's processes whose command line names ``folder`` or that hold a file
    in it open."""
    me, found = os.getuid(), []
    needle = folder.rstrip("/").encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != me:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if needle in cmd or _holds_file_in(entry, folder.rstrip("/") + "/"):
            parts = [p for p in cmd.split(b"\0") if p]
            name = next((os.path.basename(p.decode(errors="replace")) for p in parts
                         if p.endswith(b".py") or b"ray" in p.lower()), parts[0].decode(errors="replace") if parts else "?")
            found.append((int(entry), name))
    return found


def _stop(pids: list[int], grace_s: float = 2.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + grace_s
        while time.time() < deadline and any(_start_ticks(p) is not None and not _zombie(p) for p in pids):
            time.sleep(0.05)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def clean_dead_instances(tmp: str = "/tmp", stream=None) -> list[dict]:
    """Stop and remove what dead drivers' local Ray instances left in ``tmp``; returns one dict per
    folder cleaned (``folder``, ``owner_pid``, ``stopped``: the processes' names)."""
    host, cleaned = socket.gethostname(), []
    for folder in sorted(glob.glob(os.path.join(tmp, PREFIX + "*"))):
        try:
            with open(os.path.join(folder, OWNER_FILE)) as f:
                owner = json.load(f)
        except (OSError, ValueError):
            continue                                   # not ours to judge
        if owner.get("host") != host or owner_alive(owner):
            continue
        procs = processes_of(folder)
        _stop([pid for pid, _ in procs])
        shutil.rmtree(folder, ignore_errors=True)
        cleaned.append({"folder": folder, "owner_pid": owner.get("pid"), "stopped": [n for _, n in procs]})
        if stream is not None:
            what = f"stopped {len(procs)} process(es) ({', '.join(sorted({n for _, n in procs}))})" if procs \
                else "no process left"
            print(f"[chorus tune] cleaned up the local Ray instance of dead driver pid {owner.get('pid')}: "
                  f"{what}, removed {folder}", file=stream, flush=True)
    return cleaned
