"""Process helpers for the infra and scale-out tests, and the tests of those helpers.

The scale-out tests start real servers and clusters (``mlflow server``, ``ray start``,
``accelerate launch``). Each is started in its own session (``start_new_session``) so that the
test can stop it and every process it spawned, and only those, by session id: ``ray stop`` or
``pkill`` would also hit the Ray clusters and servers of other test runs on the same machine.

Ray and torch.distributed bind their sockets to all interfaces. Where the machine allows it
(root, iproute2) those tests run inside a private network namespace that has only a loopback
interface, so nothing they open is reachable from outside the test.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent          # the venv's bin/: accelerate, ray, mlflow, chorus


def tool(name: str) -> str:
    """Path of an executable of this Python environment (falls back to PATH)."""
    candidate = BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed")
    return found


def child_env(**extra: str) -> dict[str, str]:
    """Environment for child processes: this venv first on PATH, no telemetry, no Ray token."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    env.setdefault("RAY_AUTH_MODE", "disabled")
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra)
    return env


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def session_pids(sid: int) -> list[int]:
    """Live processes whose session id is ``sid`` (Linux /proc)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getsid(int(entry)) == sid:
                pids.append(int(entry))
        except (ProcessLookupError, PermissionError):
            continue
    return pids


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


class Service:
    """A process started in a new session, with its output in a log file."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None,
                 cwd: Path | str = REPO):
        self.args = args
        self.log = log
        self._fh = open(log, "wb")
        self.proc = subprocess.Popen(
            args, stdout=self._fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env or child_env(), cwd=str(cwd), start_new_session=True,
        )

    @property
    def sid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        if not self._fh.closed:
            self._fh.flush()
        return self.log.read_text(errors="replace")

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL, every process of this session; waits until none is left."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            pids = session_pids(self.sid)
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                self.proc.poll()
                if not any(_alive(p) for p in session_pids(self.sid)):
                    break
                time.sleep(0.2)
            else:
                continue
            break
        self.proc.poll()
        self._fh.close()


def wait_http(url: str, service: Service, timeout: float = 90.0) -> float:
    """Waits until ``url`` answers (any HTTP status); returns the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if service.proc.poll() is not None:
            pytest.fail(f"{service.args[0]} exited with {service.proc.returncode}:\n{service.output()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return time.monotonic() - start
        except urllib.error.HTTPError:
            return time.monotonic() - start
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"{url} did not answer within {timeout} s:\n{service.output()[-3000:]}")


def listening_addresses(port: int) -> set[str]:
    """Local IPv4/IPv6 addresses with a socket listening on ``port`` (from /proc/net/tcp*)."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            local, state = fields[1], fields[3]
            address, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:
                continue
            raw = bytes.fromhex(address)
            if width == 8:
                found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
            else:
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


def start_mlflow(home: Path, port: int, *, auth: bool = False, env: dict[str, str] | None = None,
                 extra: list[str] | None = None) -> Service:
    """``infra/mlflow/start_server.sh`` on 127.0.0.1:``port`` with its state in ``home``."""
    args = ["bash", str(REPO / "infra" / "mlflow" / "start_server.sh"),
            "--home", str(home), "--port", str(port), "--workers", "1"]
    if auth:
        args.append("--auth")
    args += extra or []
    home.mkdir(parents=True, exist_ok=True)
    return Service(args, home.parent / f"{home.name}.log", env=child_env(**(env or {})))


def small_shards(tmp_path_factory, samples: int = 160, shard_mb: float = 1.5) -> Path:
    """Shards of the embedded N-Digits set cut to its first ``samples`` digits, made once per session
    with the real ``chorus shard`` (several small train shards, so that every reader has its own)."""
    out = tmp_path_factory.getbasetemp() / f"ndigits-{samples}-{shard_mb:g}mb"
    if (out / "manifest.json").exists():
        return out
    import yaml

    card = yaml.safe_load((REPO / "datasets" / "ndigits.yaml").read_text())
    card.setdefault("options", {})["limit"] = samples
    card_path = out.parent / f"{out.name}.card.yaml"
    card_path.write_text(yaml.safe_dump(card))
    subprocess.run([tool("chorus"), "shard", str(card_path), "--out", str(out), "--workers", "1",
                    "--shard-size", str(shard_mb)], check=True, env=child_env(), cwd=REPO,
                   capture_output=True, timeout=300)
    return out


class NetNamespace:
    """A private network namespace with only a loopback interface (needs root and iproute2).

    ``wrap(args)`` returns the command that runs ``args`` inside it; without namespace support it
    returns ``args`` unchanged, and the processes use the host's loopback address instead.
    """

    def __init__(self) -> None:
        self.name = f"chorus-test-{uuid.uuid4().hex[:8]}"
        self.active = False
        ip = shutil.which("ip")
        if ip is None or os.geteuid() != 0:
            return
        made = subprocess.run([ip, "netns", "add", self.name], capture_output=True)
        if made.returncode != 0:
            return
        up = subprocess.run([ip, "netns", "exec", self.name, ip, "link", "set", "lo", "up"],
                            capture_output=True)
        if up.returncode != 0:
            subprocess.run([ip, "netns", "delete", self.name], capture_output=True)
            return
        self.ip = ip
        self.active = True

    def wrap(self, args: list[str]) -> list[str]:
        return [self.ip, "netns", "exec", self.name, *args] if self.active else list(args)

    def delete(self) -> None:
        if self.active:
            subprocess.run([self.ip, "netns", "delete", self.name], capture_output=True)
            self.active = False


# ---- tests of the helpers themselves -------------------------------------------------------

def test_service_stop_ends_every_process_of_its_session(tmp_path):
    # A shell that leaves a grandchild behind in its own process group, as Ray's workers do.
    script = "sleep 300 & (set -m; sleep 301 & wait) & wait"
    svc = Service(["bash", "-c", script], tmp_path / "log")
    deadline = time.monotonic() + 5
    while len(session_pids(svc.sid)) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    started = session_pids(svc.sid)
    groups = {os.getpgid(p) for p in started}
    assert len(started) >= 4 and len(groups) >= 2
    svc.stop(grace=2)
    assert not [p for p in started if _alive(p)]


def test_netns_has_only_loopback():
    ns = NetNamespace()
    try:
        if not ns.active:
            pytest.skip("no network namespaces here (needs root and iproute2)")
        out = subprocess.run(ns.wrap(["ip", "-o", "addr"]), capture_output=True, text=True,
                             check=True).stdout
        interfaces = {line.split()[1] for line in out.splitlines()}
        assert interfaces == {"lo"}
    finally:
        ns.delete()
