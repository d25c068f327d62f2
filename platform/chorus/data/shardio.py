"""Shard bytes for the reader: local files memory-mapped, remote ones fetched whole and cached.

A :class:`ShardStore` opens the shards of one split as buffers the tar walker
(:mod:`chorus.data.tarwalk`) slices. A local shard (a folder or ``file://``) is memory-mapped as
before. A remote shard (``s3://``, ``gs://``, ``https://``) is fetched whole with one request
(whole-shard reads measured faster than range reads, ``bench/data.py``), through the node-local
:class:`~chorus.data.cache.ShardCache` when there is one (checked against the manifest's sha256
on first fetch, then read from disk), or into memory when ``cache_gb`` is 0. The shards the reader
will want next are fetched ahead by ``prefetch`` background threads (in the reader's order), so
that downloading overlaps decoding; at most ``prefetch`` + 1 shards are held in memory.

The reader names shards by their URL in every error, never by a cache path.
"""
from __future__ import annotations

import contextlib
import mmap
import os
from concurrent.futures import ThreadPoolExecutor

from chorus.data import remote
from chorus.data.cache import GB, ShardCache, check
from chorus.data.errors import DataError
from chorus.data.sink import cache_root
from chorus.data.urls import is_remote, join

DEFAULT_CACHE_GB = 20.0


def default_cache_dir() -> str:
    """``$CHORUS_CACHE_DIR/shards`` (or ``~/.cache/chorus/shards``)."""
    return os.path.join(cache_root(), "shards")


class ShardStore:
    """Buffers of the shards of ``split``; ``order(shards)`` tells which come next (prefetch)."""

    def __init__(self, manifest: dict, split: str, *, cache_dir: str | None = None,
                 cache_gb: float | None = None, retries: int = remote.RETRIES,
                 prefetch: int = 2, parts: int = 1, read: str = "whole"):
        self.location = manifest["folder"]
        info = manifest["splits"][split]
        self.names = info["shards"]
        self.sha256 = info.get("sha256") or [None] * len(self.names)
        self.sizes = info.get("bytes") or [None] * len(self.names)
        self.remote = is_remote(self.location)
        self.retries = int(retries)
        self.parts = int(parts)
        if read not in ("whole", "range"):
            raise DataError(f"remote read must be 'whole' or 'range', got {read!r}")
        self.read = read
        self.prefetch = max(0, int(prefetch))
        self.cache_dir = cache_dir or default_cache_dir()
        self.cache_gb = DEFAULT_CACHE_GB if cache_gb is None else float(cache_gb)
        self._cache = None
        self._pool = None
        self._futures: dict = {}
        self._order: list[int] = []
        self._pid = None

    def url(self, s: int) -> str:
        return join(self.location, self.names[s])

    @property
    def cache(self) -> ShardCache | None:
        if self.remote and self.cache_gb > 0 and self._cache is None:
            self._cache = ShardCache(self.cache_dir, int(self.cache_gb * GB))
        return self._cache

    def order(self, shards) -> None:
        """The shards the reader will open, in order (fetched ahead)."""
        self._order = list(shards)

    def _fetch(self, s: int):
        url = self.url(s)

        def download():
            return remote.fetch(url, retries=self.retries, parts=self.parts, size=self.sizes[s])

        if self.cache is not None and self.sha256[s] is not None and self.sizes[s] is not None:
            return self.cache.get(url, self.sha256[s], int(self.sizes[s]), download)
        data = download()
        check(url, data, self.sha256[s], self.sizes[s])
        return "bytes", data

    def _submit(self, s: int):
        if os.getpid() != self._pid:          # a forked worker process: threads do not survive
            self._pid, self._pool, self._futures = os.getpid(), None, {}
        if self.prefetch == 0:
            return None
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.prefetch, thread_name_prefix="chorus-fetch")
        if s not in self._futures:
            self._futures[s] = self._pool.submit(self._fetch, s)
        return self._futures[s]

    @contextlib.contextmanager
    def view(self, s: int):
        """A sliceable buffer holding shard ``s`` (bytes or a memory map), and its size."""
        if not self.remote:
            path = self.url(s)
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size == 0:
                    yield b"", 0
                    return
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as view:
                    yield view, size
            return
        if self.read == "range":
            with _RangeView.open(self.url(s), self.sizes[s], self.retries) as view:
                yield view, len(view)
            return
        future = self._submit(s)
        if s in self._order:                  # fetch the next ones while this one is read
            at = self._order.index(s)
            for nxt in self._order[at + 1:at + 1 + self.prefetch]:
                self._submit(nxt)
        kind, payload = future.result() if future is not None else self._fetch(s)
        self._futures.pop(s, None)
        if kind == "bytes":
            yield payload, len(payload)
            return
        with payload as f:
            size = os.fstat(f.fileno()).st_size
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as view:
                yield view, size

    def close(self) -> None:
        """Stop fetching ahead; shards fetched but not read are dropped."""
        if self._pool is not None and self._pid == os.getpid():
            for future in self._futures.values():
                future.cancel()
            self._pool.shutdown(wait=True, cancel_futures=True)
            for future in self._futures.values():
                if future.done() and not future.cancelled() and future.exception() is None:
                    kind, payload = future.result()
                    if kind == "file":
                        payload.close()
        self._pool, self._futures = None, {}



class _RangeView:
    """Range reads of one remote shard (the measured alternative to whole-shard reads, no
    cache): slices become ``seek`` + ``read`` on an fsspec file with a read-ahead buffer of
    ``BLOCK`` bytes, so only the blocks the walk touches are requested."""

    BLOCK = 4 << 20

    def __init__(self, f, size: int, url: str = ""):
        self.f = f
        self.size = size
        self.url = url

    @classmethod
    @contextlib.contextmanager
    def open(cls, url: str, size: int | None, retries: int):
        from chorus.data.urls import filesystem

        fs, path = filesystem(url)
        if size is None:
            size = int(remote._tried(url, "size", lambda: fs.size(path), retries))
        f = remote._tried(url, "open", lambda: fs.open(path, "rb", block_size=cls.BLOCK,
                                                      cache_type="readahead"), retries)
        try:
            yield cls(f, int(size), url)
        finally:
            f.close()

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, item: slice) -> bytes:
        start, stop = max(0, item.start or 0), min(self.size, item.stop)
        if stop <= start:
            return b""
        try:
            self.f.seek(start)
            return self.f.read(stop - start)
        except Exception as exc:      # the store's client errors, untried again mid-walk
            raise DataError(f"range read of bytes {start}..{stop} failed "
                            f"({type(exc).__name__}: {exc})", where=self.url) from exc
