"""The node-local shard cache (``data.cache_dir``, ``data.cache_gb``): epoch 2 reads from disk.

Entries are whole shards named by their manifest sha256 (``CACHE/<sha256>.tar``), so a shard is
downloaded once per node whatever its URL, and a shard rewritten under the same name (a new
manifest, a new sha256) is never served stale. Several ranks (processes) of one node share one
cache safely:

- a per-shard ``flock`` (``<sha256>.lock``, removed when the download ends): one process
  downloads a shard, the others wait for it and then read the finished file; no two download the
  same shard at once;
- a download is written to ``<sha256>.tar.part-<host>-<pid>``, checked against the manifest's
  sha256 and only then renamed into place (atomic); a mismatch deletes it and raises a
  :class:`DataError` naming the URL: nothing is cached;
- the size bound: under a cache-wide lock (``.cache.lock``) a download first reserves its bytes
  (the part file is made at its full size) and the least recently used shards are deleted until
  everything fits in ``cache_gb``; a shard larger than the whole cache (or one that cannot get
  room because other downloads hold it) is read into memory without being cached. A reader that
  has a shard open keeps reading it even if another process deletes it (POSIX unlink).
- ``os.utime`` on every hit keeps the least-recently-used order; part files of dead processes
  (same host) are removed by the next reservation.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import socket
import warnings

from chorus.data.errors import DataError

GB = 1 << 30


class _Flock:
    """A blocking ``flock`` on a lock file; with ``remove``, the file is deleted on release (the
    unlink-while-locked protocol: a waiter that locked a deleted file notices and tries again)."""

    def __init__(self, path: str, remove: bool = False):
        self.path = path
        self.remove = remove

    def __enter__(self):
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    self.fd = fd
                    return self
            except FileNotFoundError:
                pass
            os.close(fd)

    def __exit__(self, *exc):
        if self.remove:
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ShardCache:
    """Whole-shard cache in ``folder`` holding at most ``max_bytes``."""

    def __init__(self, folder: str, max_bytes: int):
        self.folder = os.path.abspath(os.path.expanduser(os.fspath(folder)))
        self.max_bytes = int(max_bytes)
        try:
            os.makedirs(self.folder, exist_ok=True)
        except OSError as exc:
            raise DataError(f"cannot create the shard cache ({exc}); set data.cache_dir",
                            where=self.folder) from exc
        self.host = socket.gethostname()
        self.hits = 0
        self.downloads = 0
        self.uncached = 0

    def path(self, sha256: str) -> str:
        return os.path.join(self.folder, f"{sha256}.tar")

    def _open(self, sha256: str):
        """The cached file, opened (and touched for LRU), or None."""
        try:
            f = open(self.path(sha256), "rb")
        except FileNotFoundError:
            return None
        try:
            os.utime(f.fileno())
        except OSError:
            pass
        return f

    def used(self) -> int:
        """Bytes held by finished shards and reserved by downloads in progress."""
        total = 0
        for name in os.listdir(self.folder):
            if ".tar" in name:
                try:
                    total += os.stat(os.path.join(self.folder, name)).st_size
                except FileNotFoundError:
                    pass
        return total

    def _entries(self):
        """(mtime, size, path) of finished shards, oldest first; stale part files removed."""
        entries = []
        for name in os.listdir(self.folder):
            path = os.path.join(self.folder, name)
            if ".tar.part-" in name:
                host, _, pid = name.rsplit(".part-", 1)[1].rpartition("-")
                if host == self.host and pid.isdigit() and not _pid_alive(int(pid)):
                    try:
                        os.remove(path)
                    except FileNotFoundError:
                        pass
                continue
            if name.endswith(".tar"):
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    continue
                entries.append((st.st_mtime, st.st_size, path))
        return sorted(entries)

    def _reserve(self, sha256: str, size: int) -> str | None:
        """Make room for ``size`` bytes (evicting LRU shards); the part file, or None."""
        if size > self.max_bytes:
            return None
        with _Flock(os.path.join(self.folder, ".cache.lock")):
            entries = self._entries()
            used = self.used()
            for _, entry_size, path in entries:
                if used + size <= self.max_bytes:
                    break
                try:
                    os.remove(path)
                    used -= entry_size
                except FileNotFoundError:
                    pass
            if used + size > self.max_bytes:
                return None                   # other downloads in progress hold the room
            part = f"{self.path(sha256)}.part-{self.host}-{os.getpid()}"
            with open(part, "wb") as f:
                f.truncate(size)              # the reservation counts at once
            return part

    def get(self, url: str, sha256: str, size: int, download):
        """``("file", open file)`` of the verified shard, or ``("bytes", data)`` when it is not
        cached (too large, no room, or a full disk). ``download()`` gives the shard's bytes;
        they are checked against ``sha256`` before anything is kept."""
        f = self._open(sha256)
        if f is not None:
            self.hits += 1
            return "file", f
        with _Flock(os.path.join(self.folder, f"{sha256}.lock"), remove=True):
            f = self._open(sha256)            # another process fetched it while we waited
            if f is not None:
                self.hits += 1
                return "file", f
            part = self._reserve(sha256, size)
            try:
                data = download()
                check(url, data, sha256, size)
                self.downloads += 1
                if part is None:
                    self.uncached += 1
                    warnings.warn(f"{url}: not cached ({size / 2**20:.1f} MB does not fit the "
                                  f"{self.max_bytes / 2**20:.1f} MB cache {self.folder} now)",
                                  stacklevel=3)
                    return "bytes", data
                try:
                    with open(part, "r+b") as out:
                        out.write(data)
                    os.replace(part, self.path(sha256))
                    part = None
                except OSError as exc:
                    if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                        raise
                    self.uncached += 1
                    warnings.warn(f"{url}: not cached, the cache's disk is full ({exc})",
                                  stacklevel=3)
                    return "bytes", data
            finally:
                if part is not None:
                    try:
                        os.remove(part)
                    except FileNotFoundError:
                        pass
        f = self._open(sha256)
        return ("file", f) if f is not None else ("bytes", data)


def check(url: str, data: bytes, sha256: str | None, size: int | None) -> None:
    """Raise naming ``url`` when the downloaded bytes are not the manifest's."""
    if size is not None and len(data) != size:
        raise DataError(f"downloaded {len(data)} bytes, the manifest says {size}: the shard "
                        f"changed after its manifest was written, or the download was cut; "
                        f"nothing was cached", where=url)
    if sha256 is not None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise DataError(f"sha256 {actual[:16]}… differs from the manifest's {sha256[:16]}…: "
                            f"the shard changed after its manifest was written, or the download "
                            f"was corrupted; nothing was cached", where=url)
