"""Where ``chorus shard --out`` puts its files: a local folder, or a URL (``s3://``, ``gs://``…).

Both keep the writer's promises (docs/architecture.md, "Data"): a shard appears only once it is complete,
``.progress.json`` records every finished shard, ``manifest.json`` comes last, and one writer at
a time holds the output (:mod:`chorus.folder_lock`).

- :class:`LocalSink`: shards are written as ``NAME.tmp`` in the folder and renamed into place.
- :class:`RemoteSink`: shards are written into a local staging folder (one per URL, under
  ``$CHORUS_CACHE_DIR`` or ``~/.cache/chorus``), uploaded as soon as each one is closed and then
  deleted locally; ``.progress.json`` is uploaded after each shard, so a run killed anywhere
  resumes from the store, even on another machine, and gives the same objects. The lock is taken
  on the staging folder: it keeps out a second writer of the same URL on the same machine (an
  object store has no locks; writers on two machines are not kept apart).
"""
from __future__ import annotations

import hashlib
import json
import os

from chorus.data import remote
from chorus.data.urls import is_remote, join, normalize
from chorus.folder_lock import FolderLock


def cache_root() -> str:
    """``$CHORUS_CACHE_DIR``, else ``$XDG_CACHE_HOME/chorus``, else ``~/.cache/chorus``."""
    if os.environ.get("CHORUS_CACHE_DIR"):
        return os.path.abspath(os.environ["CHORUS_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "chorus")


class LocalSink:
    def __init__(self, out: str):
        self.location = normalize(out)
        self.staging = self.location
        self.created = not os.path.isdir(self.location)
        os.makedirs(self.location, exist_ok=True)

    def discard_if_empty(self) -> None:
        """After an error: remove the output folder if this run made it and it stayed empty."""
        if self.created:
            try:
                os.rmdir(self.location)
            except OSError:
                pass

    def lock(self) -> FolderLock:
        return FolderLock(self.location, purpose="chorus shard")

    def read_json(self, name: str):
        path = os.path.join(self.location, name)
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)

    def write_json(self, name: str, data: dict) -> None:
        """Atomically: a reader never sees half a file."""
        path = os.path.join(self.location, name)
        with open(path + ".tmp", "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(path + ".tmp", path)

    def exists(self, name: str) -> bool:
        return os.path.exists(os.path.join(self.location, name))

    def publish(self, name: str) -> None:
        """The finished shard is already in place (renamed by the writer)."""

    def remove(self, name: str) -> None:
        try:
            os.remove(os.path.join(self.location, name))
        except FileNotFoundError:
            pass


class RemoteSink(LocalSink):
    def __init__(self, url: str, retries: int = remote.RETRIES):
        self.location = normalize(url)
        self.retries = retries
        digest = hashlib.sha256(self.location.encode()).hexdigest()[:16]
        self.staging = os.path.join(cache_root(), "upload", digest)
        self.created = False
        os.makedirs(self.staging, exist_ok=True)
        with open(os.path.join(self.staging, "URL"), "w") as f:
            f.write(self.location + "\n")

    def lock(self) -> FolderLock:
        return FolderLock(self.staging, purpose=f"chorus shard --out {self.location}")

    def read_json(self, name: str):
        url = join(self.location, name)
        try:
            data = remote.fetch(url, retries=self.retries)
        except remote.NotFound:
            return None
        return json.loads(data)

    def write_json(self, name: str, data: dict) -> None:
        text = json.dumps(data, indent=1, sort_keys=True) + "\n"
        remote.put_bytes(join(self.location, name), text.encode(), retries=self.retries)

    def exists(self, name: str) -> bool:
        return remote.exists(join(self.location, name), retries=self.retries)

    def publish(self, name: str) -> None:
        """Upload the closed shard, then drop the local copy."""
        local = os.path.join(self.staging, name)
        remote.put_file(local, join(self.location, name), retries=self.retries)
        os.remove(local)

    def remove(self, name: str) -> None:
        remote.remove(join(self.location, name), retries=self.retries)


def make_sink(out: str, retries: int = remote.RETRIES):
    return RemoteSink(out, retries) if is_remote(out) else LocalSink(out)
