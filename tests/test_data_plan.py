"""Batch plans (chorus.data.plan): equal batches on every rank, each sample exactly once in eval."""
import itertools

import numpy as np
import pytest

from chorus.data.errors import DataError
from chorus.data.plan import rank_batches


def all_samples(counts):
    return sorted((s, o) for s, c in enumerate(counts) for o in range(c))


@pytest.mark.parametrize("counts,world,batch", [
    ([7, 3, 10], 2, 4), ([1], 1, 8), ([5, 5, 5, 5, 1], 3, 2), ([100], 4, 7), ([9, 2], 2, 3)])
def test_eval_sees_every_sample_once_with_equal_batch_counts(counts, world, batch):
    per_rank = [rank_batches(counts, batch_size=batch, rank=r, world_size=world)
                for r in range(world)]
    assert len({len(b) for b in per_rank}) == 1
    seen = [(int(s), int(o)) for batches in per_rank for ids, ords in batches
            for s, o in zip(ids, ords)]
    assert sorted(seen) == all_samples(counts)
    sizes = [len(ids) for batches in per_rank for ids, _ in batches]
    assert max(sizes) <= batch and max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


def test_train_equal_batches_no_duplicates_and_deterministic():
    counts = [13, 8, 21, 5]
    world, batch = 2, 4
    plans = [rank_batches(counts, batch_size=batch, rank=r, world_size=world, train=True,
                          seed=3, epoch=1, window=8) for r in range(world)]
    assert [len(p) for p in plans] == [47 // 8, 47 // 8]
    seen = [(int(s), int(o)) for p in plans for ids, ords in p for s, o in zip(ids, ords)]
    assert len(seen) == len(set(seen)) == 5 * 8
    assert all(len(ids) == batch for p in plans for ids, _ in p)
    again = rank_batches(counts, batch_size=batch, rank=0, world_size=world, train=True, seed=3,
                         epoch=1, window=8)
    other = rank_batches(counts, batch_size=batch, rank=0, world_size=world, train=True, seed=3,
                         epoch=2, window=8)
    flat = lambda p: [(int(s), int(o)) for ids, ords in p for s, o in zip(ids, ords)]
    assert flat(again) == flat(plans[0])
    assert flat(other) != flat(plans[0])


def test_too_few_samples_is_a_clear_error():
    with pytest.raises(DataError, match="cannot fill one batch"):
        rank_batches([3], batch_size=4, world_size=1, train=True)
    with pytest.raises(DataError, match="every one of 4 ranks"):
        rank_batches([3], batch_size=1, rank=0, world_size=4)
