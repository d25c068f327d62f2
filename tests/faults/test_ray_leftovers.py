"""The clean-up of a dead driver's local Ray instance (issue 19.1) with real processes: a process that
ignores SIGTERM and names the folder on its command line (as Ray's DashboardAgent/RuntimeEnvAgent do)
is stopped and the folder removed only when the folder's owner is dead; a live owner's folder and a
folder without an owner file are left alone."""
import json
import os
import subprocess
import sys
import tempfile

from chorus.tune.ray_leftovers import OWNER_FILE, clean_dead_instances, processes_of, write_owner

STUBBORN = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
            "time.sleep(120)")


def _agent(folder):
    """A process like Ray's agents: ignores SIGTERM, its command line names the session folder."""
    p = subprocess.Popen([sys.executable, "-c", STUBBORN, f"--session-dir={folder}/session_1"],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"      # SIGTERM is ignored from here on
    return p


def _folder(tmp, owner_pid=None):
    folder = tempfile.mkdtemp(prefix="chorus-ray-", dir=tmp)
    if owner_pid is not None:
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        with open(os.path.join(folder, OWNER_FILE), "w") as f:
            json.dump({"host": os.uname().nodename, "pid": owner_pid or dead.pid, "start_ticks": None}, f)
    return folder


def test_only_dead_owners_instances_are_stopped_and_removed(tmp_path, fault_record):
    dead = _folder(str(tmp_path), owner_pid=0)          # owner: a process that has exited
    live = tempfile.mkdtemp(prefix="chorus-ray-", dir=str(tmp_path))
    write_owner(live)                                   # owner: this test process
    foreign = _folder(str(tmp_path))                    # no owner file
    agents = {name: _agent(f) for name, f in (("dead", dead), ("live", live), ("foreign", foreign))}
    try:
        assert all(processes_of(f) for f in (dead, live, foreign))
        cleaned = clean_dead_instances(str(tmp_path))
        assert [c["folder"] for c in cleaned] == [dead]
        assert agents["dead"].wait(timeout=10) == -9      # SIGTERM ignored, so SIGKILL
        assert not os.path.exists(dead)
        assert agents["live"].poll() is None and agents["foreign"].poll() is None
        assert os.path.isdir(live) and os.path.isdir(foreign)
    finally:
        for p in agents.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    fault_record("dead driver's Ray leftovers (agent ignoring SIGTERM)", 1, 1, 0)
