"""One writer per output folder: an exclusive lock on ``FOLDER/.chorus.lock`` (stdlib only).

Used by the shard writer (``chorus shard --out``) and meant for the training run folder too. The
lock is a kernel lock (``fcntl.flock``) on a small file that also holds the holder's host, pid,
start time and command line, so that a refused writer can say who holds the folder:

    with FolderLock(out, purpose="chorus shard"):
        ...write into out...

- A second writer on the same folder gets :class:`FolderLockedError` at once (no waiting), whose
  message names the folder and the holder (host, pid, since, command).
- A lock left by a dead process is taken over safely: the kernel drops a ``flock`` when its
  process dies (SIGKILL included), so the next writer simply gets it and rewrites the holder
  record; there is no "is that pid still alive?" guess and no window in which two writers both
  think they hold it.
- On release the file is removed while still locked; a writer that opened the old file before the
  removal notices after locking that the path no longer names the file it locked, and tries again
  (the usual unlink-while-locked protocol), so a finished folder keeps no lock file.

On network file systems ``flock`` is as good as the file system's own locking (Linux NFS maps it
to POSIX byte-range locks across clients).
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time

LOCK_NAME = ".chorus.lock"


class FolderLockedError(RuntimeError):
    """The folder is held by another writer; ``holder`` is its record (host, pid, since, command)."""

    def __init__(self, folder: str, holder: dict, purpose: str = ""):
        self.folder = folder
        self.holder = holder
        since = holder.get("since")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if since else "?"
        what = f" ({purpose})" if purpose else ""
        super().__init__(
            f"{folder}: in use by another writer{what}: pid {holder.get('pid', '?')} on host "
            f"{holder.get('host', '?')}, since {when}, running {holder.get('command', '?')!r}. "
            f"Wait for it to finish (or stop it), or choose another output folder; nothing was "
            f"changed.")


def _holder_record(purpose: str) -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time(),
            "purpose": purpose, "command": " ".join([os.path.basename(sys.argv[0] or "python"),
                                                      *sys.argv[1:]])[:500]}


def read_holder(folder: str) -> dict:
    """The holder record in ``folder``'s lock file ({} when there is none or it is unreadable)."""
    try:
        with open(os.path.join(folder, LOCK_NAME)) as f:
            return json.loads(f.read() or "{}")
    except (OSError, ValueError):
        return {}


class FolderLock:
    """Exclusive, non-blocking lock on an existing ``folder`` (a context manager)."""

    def __init__(self, folder: str, purpose: str = ""):
        self.folder = os.fspath(folder)
        self.path = os.path.join(self.folder, LOCK_NAME)
        self.purpose = purpose
        self._fd: int | None = None

    def acquire(self) -> "FolderLock":
        if self._fd is not None:
            return self
        for _ in range(100):                  # only loops when a holder removed the file meanwhile
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                raise FolderLockedError(self.folder, read_holder(self.folder),
                                        self.purpose) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:                      # we locked a file its holder had just removed
                os.close(fd)
                continue
            record = json.dumps(_holder_record(self.purpose)).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, record, 0)
            self._fd = fd
            return self
        raise RuntimeError(f"{self.path}: could not take the lock (the file kept changing)")

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.remove(self.path)              # still locked: no one else can hold it now
        except FileNotFoundError:
            pass
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
