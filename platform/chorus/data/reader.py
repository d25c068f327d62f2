"""``make_loader``: shard set → streaming ``(x, y)`` batches (DESIGN.md "Shards", "Data flow").

Each DataLoader worker reads, with a ``webdataset`` pipeline, only the shards that hold its batches
(:mod:`chorus.data.plan` says which samples make which batch on which rank), decodes and bins each
of its samples (:mod:`chorus.data.transform`), and yields whole batches in order. Bad samples raise
:class:`DataError` naming shard and key, or with ``on_error="skip"`` are left out of their batch with
a warning, and counted in ``loader.skipped``.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import torch

from chorus.data import records
from chorus.data.augment import resolve
from chorus.data.errors import DataError
from chorus.data.manifest import read_manifest
from chorus.data.plan import rank_batches
from chorus.data.transform import SampleTransform


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


class _ShardBatches(torch.utils.data.IterableDataset):
    """Yields ``(x, y, worker_id, skipped_so_far)`` for the batches of this rank and worker."""

    def __init__(self, manifest, split, batches, transform, start_batch, on_error, seed, epoch):
        super().__init__()
        self.folder = manifest["folder"]
        self.kind = manifest["kind"]
        self.shards = manifest["splits"][split]["shards"]
        self.batches = batches
        self.transform = transform
        self.start_batch = start_batch
        self.on_error = on_error
        self.seed = seed
        self.epoch = epoch

    def _fail(self, error: DataError, state: dict) -> None:
        if self.on_error == "raise":
            raise error
        state["skipped"] += 1
        warnings.warn(f"skipped: {error}", stacklevel=2)

    def _handler(self, url: str):
        def handle(exn):
            error = DataError(f"corrupt or truncated tar ({type(exn).__name__}: {exn})",
                              where=url)
            if self.on_error == "raise":
                raise error
            warnings.warn(f"skipping the rest of the shard: {error}", stacklevel=2)
            return False          # the samples it held are counted as missing below
        return handle

    def __iter__(self):
        import webdataset as wds

        info = torch.utils.data.get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        if info is not None:
            torch.set_num_threads(1)
        mine = [k for k in range(self.start_batch, len(self.batches))
                if (k - self.start_batch) % workers == worker]
        wanted: dict[tuple[int, int], tuple[int, int]] = {}
        shard_order: list[int] = []
        for k in mine:
            shard_ids, ordinals = self.batches[k]
            for pos, (s, o) in enumerate(zip(shard_ids.tolist(), ordinals.tolist())):
                wanted[(s, o)] = (k, pos)
                if s not in shard_order:
                    shard_order.append(s)
        slots = {k: [None] * len(self.batches[k][0]) for k in mine}
        pending = {k: len(self.batches[k][0]) for k in mine}
        state = {"skipped": 0}
        next_index = 0
        for s in shard_order:
            url = os.path.join(self.folder, self.shards[s])
            seen = set()
            pipeline = wds.DataPipeline(wds.SimpleShardList([url]),
                                        wds.tarfile_to_samples(handler=self._handler(url)))
            for ordinal, sample in enumerate(pipeline):
                target = wanted.get((s, ordinal))
                if target is None:
                    continue
                seen.add(ordinal)
                k, pos = target
                slots[k][pos] = self._sample(sample, url, s, ordinal, state)
                pending[k] -= 1
            for (ws, ordinal), (k, pos) in wanted.items():
                if ws == s and ordinal not in seen:
                    self._fail(DataError(f"sample number {ordinal} is missing: the tar ends "
                                         f"early (corrupt or truncated; the manifest lists "
                                         f"more samples)", where=url), state)
                    pending[k] -= 1
            while next_index < len(mine) and pending[mine[next_index]] == 0:
                k = mine[next_index]
                yield self._collate(k, slots.pop(k), url) + (worker, state["skipped"])
                next_index += 1

    def _sample(self, sample, url, shard, ordinal, state):
        key = str(sample.get("__key__", f"#{ordinal}"))
        try:
            payload, label = records.decode(self.kind, sample, where=url)
            rng = np.random.default_rng([self.seed, self.epoch, shard, ordinal, 7])
            return self.transform(payload, rng, url, key), label
        except DataError as error:
            self._fail(error, state)
            return None

    def _collate(self, k, items, url):
        items = [item for item in items if item is not None]
        if not items:
            raise DataError(f"every sample of batch {k} was bad", where=url)
        x = torch.from_numpy(np.stack([item[0] for item in items]))
        y = torch.tensor([item[1] for item in items], dtype=torch.int64)
        if self.kind != "points":
            x = x.transpose(0, 1).contiguous()          # [B, T, ...] -> [T, B, ...]
        return x, y


class ShardLoader:
    """Iterable of ``(x, y)`` batches of one split, rank and epoch; ``len`` = batches it yields."""

    def __init__(self, dataset: _ShardBatches, workers: int):
        self.dataset = dataset
        self.workers = workers
        self.skipped = 0

    def __len__(self) -> int:
        return max(0, len(self.dataset.batches) - self.dataset.start_batch)

    def __iter__(self):
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=None, num_workers=self.workers,
            persistent_workers=False, prefetch_factor=2 if self.workers else None)
        per_worker: dict[int, int] = {}
        for x, y, worker, skipped in loader:
            per_worker[worker] = skipped
            self.skipped = sum(per_worker.values())
            yield x, y
        if self.skipped:
            warnings.warn(f"{self.skipped} bad samples skipped in {self.dataset.folder}",
                          stacklevel=2)


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
    transform = SampleTransform(manifest, T, size, bins, settings)
    dataset = _ShardBatches(manifest, split, batches, transform, int(start_batch), on_error,
                            seed, epoch)
    return ShardLoader(dataset, int(workers))
