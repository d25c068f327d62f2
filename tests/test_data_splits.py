"""Split policies (chorus.data.splits) against hand-computed splits."""
import math

import pytest

from chorus.data import DataError
from chorus.data.splits import assign_splits


def items(per_class):
    """Items listed class by class, as the folder sources list them."""
    return [{"label": c, "source": f"{c}/{i}", "index": i}
            for c, n in enumerate(per_class) for i in range(n)]


def test_first_policy_is_spikingjelly_ceil_split_per_class():
    its = items([10, 7])
    out = assign_splits(its, "9:1-first", val_fraction=0.0)
    # class 0: ceil(9.0) = 9 train; class 1: ceil(6.3) = 7 train
    assert out["test"] == [9]
    assert out["train"] == [i for i in range(17) if i != 9]
    assert math.ceil(7 * 0.9) == 7


def test_random_policy_is_seeded_and_per_class():
    its = items([20, 20])
    a = assign_splits(its, "3:1-random", seed=1, val_fraction=0.0)
    b = assign_splits(its, "3:1-random", seed=1, val_fraction=0.0)
    c = assign_splits(its, "3:1-random", seed=2, val_fraction=0.0)
    assert a == b and a["test"] != c["test"]
    assert sum(1 for i in a["test"] if i < 20) == 5 and len(a["test"]) == 10


def test_tebn_takes_samples_0_to_99_of_each_class_as_test():
    its = items([150, 120])
    out = assign_splits(its, "tebn", val_fraction=0.0)
    assert out["test"] == list(range(100)) + list(range(150, 250))


def test_val_is_carved_from_train_per_class_never_from_test():
    its = items([50, 30])
    for i in range(80):
        its[i]["split"] = "test" if i % 5 == 0 else "train"
    out = assign_splits(its, "official", seed=0, val_fraction=0.1)
    assert out["test"] == list(range(0, 80, 5))
    assert not set(out["val"]) & set(out["test"])
    assert sum(1 for i in out["val"] if i < 50) == 4 and sum(1 for i in out["val"] if i >= 50) == 2
    assert sorted(out["train"] + out["val"] + out["test"]) == list(range(80))


def test_unknown_policy_and_missing_official_split_are_errors():
    with pytest.raises(DataError, match="unknown split policy '5-fold'"):
        assign_splits(items([3]), "5-fold")
    with pytest.raises(DataError, match="no official split"):
        assign_splits(items([3]), "official")
