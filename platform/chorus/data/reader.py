"""``make_loader``: shard set → streaming ``(x, y)`` batches (DESIGN.md "Shards", "Data flow").

Each reader thread (``workers`` of them) reads, with a ``webdataset`` pipeline (shard list → tar expansion that
reads only the wanted samples, :mod:`chorus.data.tarwalk` → webdataset's ``group_by_keys``), the
shards that hold its batches (:mod:`chorus.data.plan` says which samples make which batch on which
rank), decodes each sample and bins a whole batch at once (:mod:`chorus.data.transform`), and
yields whole batches in order. Bad samples raise
:class:`DataError` naming shard and key, or with ``on_error="skip"`` are left out of their batch with
a warning, and counted in ``loader.skipped``.
"""
from __future__ import annotations

import os
import queue
import threading
import warnings

import numpy as np
import torch

from chorus.data import binning_jit, records
from chorus.data.augment import resolve
from chorus.data.errors import DataError
from chorus.data.manifest import read_manifest
from chorus.data.plan import rank_batches
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
        return (2, int(manifest["frames"]["size"]), int(manifest["frames"]["size"]))
    if kind == "spikes":
        return (int(manifest["sensor_size"][0]),)
    return (int(size or manifest.get("num_points") or 1024), 3)


class _ShardBatches:
    """The batches of one rank; ``worker_batches(w, n)`` yields those of reader w out of n."""

    def __init__(self, manifest, split, batches, builder, start_batch, on_error, seed, epoch):
        self.folder = manifest["folder"]
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
        state["skipped"] += 1
        warnings.warn(f"skipped: {error}", stacklevel=2)

    def _read_shard(self, s, url, wanted_here, wanted, slots, pending, state):
        """Decode and prepare the wanted samples of shard ``s`` into their batch slots."""
        import webdataset as wds

        pipeline = wds.DataPipeline(wds.SimpleShardList([url]), expand_wanted(wanted_here),
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

    def worker_batches(self, worker: int, workers: int, state: dict):
        """``(x, y)`` of batches ``k`` with ``(k - start_batch) % workers == worker``, in order;
        ``state["skipped"]`` counts the bad samples this reader left out."""
        mine = [k for k in range(self.start_batch, len(self.batches))
                if (k - self.start_batch) % workers == worker]
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
        for s, wanted_here in per_shard.items():
            url = os.path.join(self.folder, self.shards[s])
            self._read_shard(s, url, wanted_here, wanted, slots, pending, state)
            while next_index < len(mine) and pending[mine[next_index]] == 0:
                k = mine[next_index]
                yield self._collate(k, slots.pop(k), url, state)
                next_index += 1

    def _sample(self, sample, url, shard, ordinal, state):
        key = str(sample.get("__key__", f"#{ordinal}"))
        try:
            payload, label = records.decode(self.kind, sample, where=url)
            seed = (self.seed, self.epoch, shard, ordinal, 7)
            return self.builder.prepare(payload, seed, url, key), label
        except DataError as error:
            self._fail(error, state)
            return None

    def _collate(self, k, items, url, state):
        items = [item for item in items if item is not None]
        if not items:
            raise DataError(f"every sample of batch {k} was bad", where=url)
        x, bad = self.builder.collate([item[0] for item in items])
        labels = [item[1] for item in items]
        if bad:
            for _, error in bad:
                self._fail(error, state)
            drop = [b for b, _ in bad]
            if len(drop) == len(items):
                raise DataError(f"every sample of batch {k} was bad", where=url)
            x = np.delete(x, drop, axis=0 if self.kind == "points" else 1)
            labels = [label for b, label in enumerate(labels) if b not in drop]
        return torch.from_numpy(x), torch.tensor(labels, dtype=torch.int64)


class ShardLoader:
    """Iterable of ``(x, y)`` batches of one split, rank and epoch; ``len`` = batches it yields.

    ``workers`` reader threads each build every ``workers``-th batch (the tar walk, decoding and
    binning release the GIL for their heavy parts: the numba kernel, numpy, memory-mapped reads),
    and batches come out in order; there is no copy between processes. ``skipped`` counts the
    bad samples left out (``on_error="skip"``).
    """

    def __init__(self, dataset: _ShardBatches, workers: int, prefetch: int = 2):
        self.dataset = dataset
        self.workers = workers
        self.prefetch = prefetch
        self.skipped = 0

    def __len__(self) -> int:
        return max(0, len(self.dataset.batches) - self.dataset.start_batch)

    def __iter__(self):
        states = [{"skipped": 0} for _ in range(max(1, self.workers))]
        if self.workers <= 1:
            for x, y in self.dataset.worker_batches(0, 1, states[0]):
                self.skipped = states[0]["skipped"]
                yield x, y
        else:
            yield from self._threaded(states)
        self.skipped = sum(state["skipped"] for state in states)
        if self.skipped:
            warnings.warn(f"{self.skipped} bad samples skipped in {self.dataset.folder}",
                          stacklevel=2)

    def _threaded(self, states):
        stop = threading.Event()
        queues = [queue.Queue(maxsize=self.prefetch) for _ in range(self.workers)]
        done = object()

        def put(q, item):
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def run(worker):
            try:
                for item in self.dataset.worker_batches(worker, self.workers, states[worker]):
                    if not put(queues[worker], item):
                        return
                put(queues[worker], done)
            except BaseException as error:          # handed to the consumer, raised there
                put(queues[worker], error)

        threads = [threading.Thread(target=run, args=(w,), daemon=True, name=f"chorus-reader-{w}")
                   for w in range(self.workers)]
        for thread in threads:
            thread.start()
        try:
            for k in range(len(self)):
                item = queues[k % self.workers].get()
                if isinstance(item, BaseException):
                    raise item
                if item is done:
                    raise RuntimeError(f"reader {k % self.workers} ended before batch {k}")
                self.skipped = sum(state["skipped"] for state in states)
                yield item
        finally:
            stop.set()
            for thread in threads:
                thread.join()


def make_loader(shards, split: str, *, T: int, size: int | None = None, batch_size: int,
                workers: int = 0, train: bool = False, seed: int = 0, epoch: int = 0,
                rank: int = 0, world_size: int = 1, augment=None, on_error: str = "raise",
                start_batch: int = 0, bins: str = "count", shuffle_window: int = 1024
                ) -> ShardLoader:
    """Batches ``(x float32, y int64)`` of ``split`` from the shard folder ``shards``.

    ``x``: ``[T, B, 2, size, size]`` events or frames, ``[T, B, channels]`` spikes, ``[B, N, 3]``
    points (``size`` = N, default the manifest's ``num_points``). Augmentation applies only when
    ``train``. ``bins`` is ``count`` (equal event counts, tonic ``n_event_bins``) or ``time``.
    """
    manifest = shards if isinstance(shards, dict) else read_manifest(shards)
    if split not in manifest["splits"]:
        raise DataError(f"no split {split!r} (has {sorted(manifest['splits'])})",
                        where=manifest["folder"])
    if on_error not in ("raise", "skip"):
        raise DataError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    counts = manifest["splits"][split]["counts"]
    batches = rank_batches(counts, batch_size=batch_size, rank=rank, world_size=world_size,
                           train=train, seed=seed, epoch=epoch, window=shuffle_window,
                           where=f"{manifest['folder']} ({split})")
    settings = resolve(augment, manifest["kind"]) if train else None
    builder = BatchBuilder(manifest, T, size, bins, settings)
    if manifest["kind"] == "events":
        binning_jit.warm_up(manifest["sensor_size"])
    dataset = _ShardBatches(manifest, split, batches, builder, int(start_batch), on_error,
                            seed, epoch)
    return ShardLoader(dataset, int(workers))
