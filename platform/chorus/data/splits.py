"""Split policies (docs/method.md "Shards": split policy and seed in the manifest).

Every policy works per class on the items in the order the source lists them:

- ``R:S-first`` (e.g. ``9:1-first``): the first ceil(n·R/(R+S)) samples of each class train, the
  rest test (SpikingJelly's ``split_to_train_test_set``, the field's default for CIFAR10-DVS);
- ``R:S-random``: the same after a seeded per-class shuffle;
- ``tebn``: samples 0–99 of each class are the test set;
- ``official``: the source says which items are test (SHD, DVS128 Gesture, ModelNet).

A validation split is then carved from train, per class and seeded (``val_fraction``), so that model
selection never looks at the test split.

:func:`shuffled_order` then gives the order in which the writer stores a split: ``train`` and ``val``
are permuted with the split seed, so that shards are class-mixed even when the source lists its
samples class by class (the reader only shuffles shards and ~1024-sample windows); ``test`` keeps
the source order.
"""
from __future__ import annotations

import math
import re

import numpy as np

from chorus.data.errors import DataError

SPLITS = ("train", "val", "test")
SHUFFLED = ("train", "val")          # splits the writer stores in a seeded random order


def _by_class(items: list[dict]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(int(item["label"]), []).append(i)
    return groups


def assign_splits(items: list[dict], policy: str, seed: int = 0,
                  val_fraction: float = 0.1, where: str = "<card>") -> dict[str, list[int]]:
    """Indices into ``items`` for ``train``, ``val`` and ``test``, each in source order."""
    test: set[int] = set()
    groups = _by_class(items)
    match = re.fullmatch(r"(\d+):(\d+)-(first|random)", policy)
    if match:
        ratio = int(match.group(1)) / (int(match.group(1)) + int(match.group(2)))
        for label, members in sorted(groups.items()):
            if match.group(3) == "random":
                rng = np.random.default_rng([seed, 0, label])
                members = [members[i] for i in rng.permutation(len(members))]
            n_train = math.ceil(len(members) * ratio)
            test.update(members[n_train:])
    elif policy == "tebn":
        for members in groups.values():
            test.update(members[:100])
    elif policy == "official":
        for i, item in enumerate(items):
            if item.get("split") not in ("train", "test"):
                raise DataError(f"policy 'official' but item {item.get('source')} has no official "
                                f"split", where=where, key="card:split.policy")
            if item["split"] == "test":
                test.add(i)
    else:
        raise DataError(f"unknown split policy {policy!r} (known: R:S-first, R:S-random, tebn, "
                        f"official)", where=where, key="card:split.policy")
    val: set[int] = set()
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}", where=where,
                        key="card:split.val_fraction")
    for label, members in sorted(groups.items()):
        train_members = [i for i in members if i not in test]
        n_val = int(round(len(train_members) * val_fraction))
        rng = np.random.default_rng([seed, 1, label])
        chosen = rng.choice(len(train_members), size=n_val, replace=False) if n_val else []
        val.update(train_members[j] for j in chosen)
    out = {"train": [], "val": [], "test": []}
    for i in range(len(items)):
        out["test" if i in test else "val" if i in val else "train"].append(i)
    return out


def shuffled_order(splits: dict[str, list[int]], seed: int = 0) -> dict[str, list[int]]:
    """The order the writer stores each split in: ``train`` and ``val`` permuted by a generator
    seeded with ``(seed, 2, split number)`` (streams 0 and 1 draw the splits), ``test`` as given.

    Deterministic for a seed, so reruns and resumed runs write the same shards."""
    out = {}
    for number, split in enumerate(SPLITS):
        members = list(splits[split])
        if split in SHUFFLED and members:
            rng = np.random.default_rng([seed, 2, number])
            members = [members[i] for i in rng.permutation(len(members))]
        out[split] = members
    return out
