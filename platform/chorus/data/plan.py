"""Which samples form which batch on which rank, from the manifest's per-shard counts alone.

The rule that keeps DDP from hanging and evaluation exact (docs/method.md "Shards", issue "Reader"):

- Samples are numbered in *stream order*: shards in manifest order (training: permuted by
  ``(seed, epoch)``), samples in tar order within a shard.
- Training: each rank takes a contiguous run of ``nb·B`` samples of the stream with
  ``nb = N // (world_size·B)`` (the remainder, different every epoch, is left out), shuffles it
  within windows of whole batches (seeded by seed, epoch, rank, window) and cuts ``nb`` batches.
- Evaluation: the stream is cut into ``world_size·nb`` batches with ``nb = ceil(N / (world_size·B))``
  whose sizes differ by at most one; rank r takes batches ``r·nb … (r+1)·nb − 1``. Every sample
  is seen exactly once and every rank yields ``nb`` batches (none for an empty split). When there
  are fewer samples than batches (only with ``B = 1``, e.g. N = 1001 on 4 ranks), the
  ``world_size·nb − N`` (< world_size) empty batches are the last batch of the last ranks, one
  per rank; the reader yields them as batches of 0 samples, which evaluation skips. Only
  ``N < world_size`` is refused: some rank would have no sample at all.

The loader yields batches in order k = start_batch, start_batch + 1, … whatever the number of
workers.
"""
from __future__ import annotations

import math

import numpy as np

from chorus.data.errors import DataError


def stream(counts: list[int], order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(shard index, ordinal within shard) of every sample in stream order."""
    shard_ids = np.concatenate([np.full(counts[s], s, dtype=np.int64) for s in order] or
                               [np.zeros(0, dtype=np.int64)])
    ordinals = np.concatenate([np.arange(counts[s], dtype=np.int64) for s in order] or
                              [np.zeros(0, dtype=np.int64)])
    return shard_ids, ordinals


def num_batches(total: int, *, batch_size: int, world_size: int, train: bool) -> int:
    """Batches per rank (the same on every rank)."""
    if train:
        return total // (world_size * batch_size)
    return math.ceil(total / (world_size * batch_size))


def rank_batches(counts: list[int], *, batch_size: int, rank: int = 0, world_size: int = 1,
                 train: bool = False, seed: int = 0, epoch: int = 0, window: int = 1024,
                 where: str = "") -> list[tuple[np.ndarray, np.ndarray]]:
    """The batches of one rank: for each, the (shard indices, ordinals) of its samples in order."""
    if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
        raise DataError(f"bad batch_size={batch_size}, rank={rank}, world_size={world_size}")
    total = int(sum(counts))
    nb = num_batches(total, batch_size=batch_size, world_size=world_size, train=train)
    if train:
        if nb == 0:
            raise DataError(f"{total} training samples cannot fill one batch of {batch_size} on "
                            f"each of {world_size} ranks", where=where)
        order = np.random.default_rng([seed, epoch]).permutation(len(counts))
        shard_ids, ordinals = stream(counts, order)
        per_rank = nb * batch_size
        lo = rank * per_rank
        shard_ids, ordinals = shard_ids[lo:lo + per_rank], ordinals[lo:lo + per_rank]
        span = max(1, math.ceil(window / batch_size)) * batch_size
        for start in range(0, per_rank, span):
            rng = np.random.default_rng([seed, epoch, rank, start // span])
            perm = start + rng.permutation(min(span, per_rank - start))
            shard_ids[start:start + len(perm)] = shard_ids[perm].copy()
            ordinals[start:start + len(perm)] = ordinals[perm].copy()
        return [(shard_ids[k * batch_size:(k + 1) * batch_size],
                 ordinals[k * batch_size:(k + 1) * batch_size]) for k in range(nb)]
    slots = world_size * nb
    if total == 0:
        return []                     # an empty split: no batches, on every rank alike
    if total < world_size:
        raise DataError(f"{total} samples cannot give every one of {world_size} ranks a sample",
                        where=where)
    if total >= slots:
        sizes = [total // slots + (1 if j < total % slots else 0) for j in range(slots)]
    else:                             # B = 1: fewer than world_size batches stay empty
        sizes = [1] * slots
        for i in range(slots - total):
            sizes[(world_size - 1 - i) * nb + nb - 1] = 0
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    shard_ids, ordinals = stream(counts, np.arange(len(counts)))
    out = []
    for j in range(rank * nb, (rank + 1) * nb):
        out.append((shard_ids[offsets[j]:offsets[j + 1]], ordinals[offsets[j]:offsets[j + 1]]))
    return out
