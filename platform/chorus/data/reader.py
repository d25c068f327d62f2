"""``make_loader``: shard set → streaming ``(x, y)`` batches (docs/method.md "Shards", "Data flow").

A rank reads, with a ``webdataset`` pipeline (shard list → tar expansion that reads only the wanted
samples, :mod:`chorus.data.tarwalk` → webdataset's ``group_by_keys``), the shards that hold its
batches (:mod:`chorus.data.plan` says which samples make which batch on which rank), decodes each
sample, bins whole batches at once (:mod:`chorus.data.transform`; ``workers`` threads, or worker
processes with ``worker_kind="processes"`` (:mod:`chorus.data.procs`), do this in parallel) and
yields them in order. The shard set may be a folder or a URL: :mod:`chorus.data.shardio` gives
the reader each shard's bytes (remote ones through the node-local cache) and the plan, the order
and every guarantee below are the same for both. Bad samples raise :class:`DataError` naming shard and key, or
with ``on_error="skip"`` are left out of their batch with a warning, and counted in
``loader.skipped``. With ``skip``, a rank still yields exactly ``len(loader)`` batches, so that DDP
ranks stay in step: a training batch whose samples were all bad is replaced by the rank's previous
good batch (or the next one, if none came yet), an evaluation batch by a batch of 0 samples (which
evaluation skips, so no sample is counted twice).
"""
from __future__ import annotations

import queue
import threading
import warnings

import numpy as np

from chorus.data import binning_jit, records
from chorus.data.augment import resolve
from chorus.data.errors import DataError
from chorus.data.manifest import read_manifest
from chorus.data.plan import rank_batches
from chorus.data.shardio import ShardStore
from chorus.data.tarwalk import expand_wanted
from chorus.data.transform import BatchBuilder


def input_shape(manifest: dict, T: int, size: int | None = None) -> tuple:
    """Per-sample model input shape without T and B (``in_shape`` of ``models.create``)."""
    kind = manifest["kind"]
    if kind == "events":
        if size is None:
            width, height = manifest["sensor_size"][:2]
            return (2, int(height), int(width))
        return (2, int(size), int(size))
    if kind == "frames":
        if manifest["frames"].get("size") is None:        # stored at the sensor's H×W
            width, height = manifest["sensor_size"][:2]
            return (2, int(height), int(width))
        return (2, int(manifest["frames"]["size"]), int(manifest["frames"]["size"]))
    if kind == "spikes":
        return (int(manifest["sensor_size"][0]),)
    return (int(size or manifest.get("num_points") or 1024), 3)


class _ShardBatches:
    """The batches of one rank: ``batch_items`` reads and prepares them in order (GIL-bound
    Python: tar walk, grouping, decoding), ``collate`` bins one batch (numba/numpy, GIL released).
    """

    def __init__(self, manifest, split, batches, builder, start_batch, on_error, seed, epoch,
                 train=False, store=None):
        self.folder = manifest["folder"]
        self.store = store if store is not None else ShardStore(manifest, split)
        self.num_classes = manifest.get("num_classes")
        self.train = train
        self.kind = manifest["kind"]
        self.shards = manifest["splits"][split]["shards"]
        self.batches = batches
        self.builder = builder
        self.start_batch = start_batch
        self.on_error = on_error
        self.seed = seed
        self.epoch = epoch

    def _fail(self, error: DataError, state: dict) -> None:
        if self.on_error == "raise":
            raise error
        with state["lock"]:
            state["skipped"] += 1
        warnings.warn(f"skipped: {error}", stacklevel=2)

    def _read_shard(self, s, url, wanted_here, wanted, slots, pending, state):
        """Decode and prepare the wanted samples of shard ``s`` into their batch slots, yielding
        after each one (so that finished batches can leave before the shard ends)."""
        import webdataset as wds

        pipeline = wds.DataPipeline(wds.SimpleShardList([url]),
                                    expand_wanted(wanted_here, lambda _: self.store.view(s)),
                                    wds.tariterators.group_by_keys)
        seen = set()
        try:
            for ordinal, sample in enumerate(pipeline):
                target = wanted.get((s, ordinal))
                if target is None:
                    continue
                seen.add(ordinal)
                k, pos = target
                slots[k][pos] = self._sample(sample, url, s, ordinal, state)
                pending[k] -= 1
                yield
        except DataError as error:
            if self.on_error == "raise":
                raise
            warnings.warn(f"skipping the rest of the shard: {error}", stacklevel=2)
        for ordinal in sorted(wanted_here - seen):
            self._fail(DataError(f"sample number {ordinal} is missing: the tar ends early "
                                 f"(corrupt or truncated; the manifest lists more samples)",
                                 where=url), state)
            k, _ = wanted[(s, ordinal)]
            pending[k] -= 1
        yield

    def pending(self) -> list[int]:
        """The batches still to yield: start_batch, …"""
        return list(range(self.start_batch, len(self.batches)))

    def batch_items(self, state: dict, only=None):
        """``(k, prepared samples, shard)`` for batches k = start_batch, … (or those in ``only``)
        in order, each as soon as its samples are read; :meth:`collate` turns one into
        ``(x, y)``."""
        mine = [k for k in self.pending() if only is None or k in only]
        wanted: dict[tuple[int, int], tuple[int, int]] = {}
        per_shard: dict[int, set[int]] = {}
        for k in mine:
            shard_ids, ordinals = self.batches[k]
            for pos, (s, o) in enumerate(zip(shard_ids.tolist(), ordinals.tolist())):
                wanted[(s, o)] = (k, pos)
                per_shard.setdefault(s, set()).add(o)     # insertion order = stream order
        slots = {k: [None] * len(self.batches[k][0]) for k in mine}
        pending = {k: len(self.batches[k][0]) for k in mine}
        next_index = 0
        self.store.order(per_shard)
        for s, wanted_here in per_shard.items():
            url = self.store.url(s)
            for _ in self._read_shard(s, url, wanted_here, wanted, slots, pending, state):
                while next_index < len(mine) and pending[mine[next_index]] == 0:
                    k = mine[next_index]
                    yield k, slots.pop(k), url
                    next_index += 1

    def _sample(self, sample, url, shard, ordinal, state):
        key = str(sample.get("__key__", f"#{ordinal}"))
        try:
            payload, label = records.decode(self.kind, sample, where=url,
                                            num_classes=self.num_classes)
            seed = (self.seed, self.epoch, shard, ordinal, 7)
            return self.builder.prepare(payload, seed, url, key), label
        except DataError as error:
            self._fail(error, state)
            return None

    def collate(self, k, items, url, state):
        """``(x, y)`` tensors of batch ``k``, or a :class:`_Lost` marker when every sample of it
        was bad (only with ``on_error="skip"``; :class:`ShardLoader` fills the gap)."""
        return to_tensors(self.collate_arrays(k, items, url, state))

    def collate_arrays(self, k, items, url, state):
        """:meth:`collate` with numpy arrays (what a worker process sends back)."""
        if not items:                 # a planned empty evaluation batch (see chorus.data.plan)
            return self.empty_arrays()
        items = [item for item in items if item is not None]
        if not items:
            return _Lost(k, url)
        x, bad = self.builder.collate([item[0] for item in items])
        labels = [item[1] for item in items]
        if bad:
            for _, error in bad:
                self._fail(error, state)
            drop = [b for b, _ in bad]
            if len(drop) == len(items):
                return _Lost(k, url)
            x = np.delete(x, drop, axis=0 if self.kind == "points" else 1)
            labels = [label for b, label in enumerate(labels) if b not in drop]
        return x, np.asarray(labels, dtype=np.int64)

    def empty_arrays(self):
        return self.builder.empty(), np.zeros(0, dtype=np.int64)

    def empty(self):
        """A batch of 0 samples, shaped like the others."""
        return to_tensors(self.empty_arrays())


def to_tensors(batch):
    """``(x, y)`` numpy arrays → torch tensors (sharing memory); a :class:`_Lost` as it is."""
    import torch

    if isinstance(batch, _Lost):
        return batch
    return torch.from_numpy(batch[0]), torch.from_numpy(batch[1])


class _Lost:
    """Marks a batch whose samples were all bad (``on_error="skip"``)."""

    def __init__(self, k: int, url: str):
        self.k = k
        self.url = url


class ShardLoader:
    """Iterable of ``(x, y)`` batches of one split, rank and epoch; ``len`` = batches it yields.

    With ``workers`` ≥ 1, one thread reads (tar walk, decoding: cheap Python) and ``workers``
    threads bin batches (the numba kernel and numpy release the GIL); batches come out in order,
    the same whatever ``workers``, and nothing is copied between processes. ``skipped`` counts
    the bad samples left out (``on_error="skip"``).
    """

    def __init__(self, dataset: _ShardBatches, workers: int, prefetch: int = 2,
                 worker_kind: str = "threads"):
        self.dataset = dataset
        self.workers = workers
        self.prefetch = prefetch
        self.worker_kind = worker_kind
        self.skipped = 0

    def __len__(self) -> int:
        return max(0, len(self.dataset.batches) - self.dataset.start_batch)

    def __iter__(self):
        state = {"skipped": 0, "lock": threading.Lock()}
        if self.workers <= 0:
            batches = self._serial(state)
        elif self.worker_kind == "processes":
            from chorus.data.procs import run_processes

            batches = run_processes(self.dataset, self.workers, self.prefetch, state)
        else:
            batches = self._threaded(state)
        try:
            yield from self._fill(batches, state)
        finally:
            batches.close()
            self.dataset.store.close()
        self.skipped = state["skipped"]
        if self.skipped:
            warnings.warn(f"{self.skipped} bad samples skipped in {self.dataset.folder}",
                          stacklevel=2)

    def _serial(self, state):
        for k, items, url in self.dataset.batch_items(state):
            yield self.dataset.collate(k, items, url, state)

    def _fill(self, batches, state):
        """Yield one batch per planned batch: a lost training batch (every sample bad) becomes
        the previous good batch again (or the next good one, when none came before), a lost
        evaluation batch a batch of 0 samples; so every rank takes the same number of steps."""
        owed, last = 0, None
        for batch in batches:
            self.skipped = state["skipped"]
            if not isinstance(batch, _Lost):
                last = batch
                for _ in range(owed + 1):
                    yield batch
                owed = 0
                continue
            if not self.dataset.train:
                warnings.warn(f"{batch.url}: every sample of batch {batch.k} was bad; it is "
                              f"yielded with 0 samples", stacklevel=2)
                yield self.dataset.empty()
                continue
            warnings.warn(f"{batch.url}: every sample of batch {batch.k} was bad; repeating "
                          f"another batch so that every rank takes the same number of steps",
                          stacklevel=2)
            if last is None:
                owed += 1
            else:
                yield last
        if owed:
            raise DataError(f"every sample of this rank's {owed} batches was bad: nothing to "
                            f"train on", where=self.dataset.folder)

    def _threaded(self, state):
        """One thread reads and prepares batches in order and hands each to a pool of
        ``workers`` threads that bin them; batches are returned in order."""
        from concurrent.futures import ThreadPoolExecutor

        stop = threading.Event()
        futures = queue.Queue(maxsize=self.workers * self.prefetch)
        done = object()
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="chorus-binning")

        def put(item):
            while not stop.is_set():
                try:
                    futures.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce():
            try:
                for k, items, url in self.dataset.batch_items(state):
                    if not put(pool.submit(self.dataset.collate, k, items, url, state)):
                        return
                put(done)
            except BaseException as error:          # handed to the consumer, raised there
                put(error)

        reader = threading.Thread(target=produce, daemon=True, name="chorus-reader")
        reader.start()
        try:
            while True:
                item = futures.get()
                if item is done:
                    break
                if isinstance(item, BaseException):
                    raise item
                batch = item.result()
                self.skipped = state["skipped"]
                yield batch
        finally:
            stop.set()
            reader.join()
            pool.shutdown(wait=True, cancel_futures=True)


def make_loader(shards, split: str, *, T: int, size: int | None = None, batch_size: int,
                workers: int = 0, train: bool = False, seed: int = 0, epoch: int = 0,
                rank: int = 0, world_size: int = 1, augment=None, on_error: str = "raise",
                start_batch: int = 0, bins: str = "count", shuffle_window: int = 1024,
                worker_kind: str = "threads", cache_dir: str | None = None,
                cache_gb: float | None = None, retries: int = 3, prefetch_shards: int = 2,
                fetch_parts: int = 1, remote_read: str = "whole") -> ShardLoader:
    """Batches ``(x float32, y int64)`` of ``split`` from the shard set ``shards`` (a folder, a
    URL such as ``s3://bucket/prefix``, or a manifest already read).

    ``x``: ``[T, B, 2, size, size]`` events or frames, ``[T, B, channels]`` spikes, ``[B, N, 3]``
    points (``size`` = N, default the manifest's ``num_points``). Augmentation applies only when
    ``train``. ``bins`` is ``count`` (equal event counts, tonic ``n_event_bins``) or ``time``.
    ``worker_kind`` ``"threads"`` (default) or ``"processes"``: what the ``workers`` are; the
    batches are the same either way. Remote shards: ``cache_dir`` (default
    ``~/.cache/chorus/shards``) holds at most ``cache_gb`` GB (default 20; 0: no cache, every
    epoch downloads again); each download is tried ``1 + retries`` times; ``prefetch_shards``
    shards are fetched ahead, each in ``fetch_parts`` concurrent range requests;
    ``remote_read="range"`` reads remote shards by ranges instead, uncached (measured slower).
    """
    manifest = shards if isinstance(shards, dict) else read_manifest(shards, retries=retries)
    if split not in manifest["splits"]:
        raise DataError(f"no split {split!r} (has {sorted(manifest['splits'])})",
                        where=manifest["folder"])
    if on_error not in ("raise", "skip"):
        raise DataError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if worker_kind not in ("threads", "processes"):
        raise DataError(f"worker_kind must be 'threads' or 'processes', got {worker_kind!r}")
    if cache_gb is not None and cache_gb < 0:
        raise DataError(f"cache_gb must be >= 0, got {cache_gb!r}")
    counts = manifest["splits"][split]["counts"]
    batches = rank_batches(counts, batch_size=batch_size, rank=rank, world_size=world_size,
                           train=train, seed=seed, epoch=epoch, window=shuffle_window,
                           where=f"{manifest['folder']} ({split})")
    settings = resolve(augment, manifest["kind"]) if train else None
    builder = BatchBuilder(manifest, T, size, bins, settings)
    if manifest["kind"] == "events":
        binning_jit.warm_up(manifest["sensor_size"])
    store = ShardStore(manifest, split, cache_dir=cache_dir, cache_gb=cache_gb, retries=retries,
                       prefetch=prefetch_shards, parts=fetch_parts, read=remote_read)
    dataset = _ShardBatches(manifest, split, batches, builder, int(start_batch), on_error,
                            seed, epoch, train=train, store=store)
    return ShardLoader(dataset, int(workers), worker_kind=worker_kind)
