"""N-Motion, the temporal embedded dataset (platform/chorus/data/embedded/nmotion.py): deterministic per
seed; the first leg of a recording is the same whatever the second leg (so the first timestep cannot know
the class); played backwards a recording is exactly one of the class (−B, −A) (so temporal order
decides the class); its shards are valid and read as 32×32 event frames."""
import collections
import os

import numpy as np
import yaml

from chorus.data import make_loader, read_manifest, shard
from chorus.data.manifest import verify
from chorus.data.embedded import nmotion as nm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DT = nm.LEG_US / nm.STEPS_PER_LEG


def test_deterministic_per_seed_and_plausible():
    a, b, c = nm.generate_sample(3, 0, 17), nm.generate_sample(3, 0, 17), nm.generate_sample(3, 1, 17)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.dtype == nm.EVENT_DTYPE and np.all(np.diff(a["t"].astype(np.int64)) >= 0)
    assert 1000 < a.size < 20000 and a["t"].max() < 2 * nm.LEG_US
    assert a["x"].max() < nm.SENSOR and a["y"].max() < nm.SENSOR and set(np.unique(a["p"])) == {0, 1}
    assert len(nm.CLASSES) == 8 and len(set(nm.CLASSES)) == 8


def _sensor(seed=0):
    return nm.sensor_of(np.random.default_rng(seed))


def _steps(movers, threshold, offset, reverse=False):
    """Multiset of (x, y, p, step) of the noise-free, jitter-free recording (optionally played backwards)."""
    x, y, t, p = nm.record(nm.render(movers), threshold, offset, DT)
    if reverse:
        t, p = 2 * nm.LEG_US - t, 1 - p
    return collections.Counter(zip(x.tolist(), y.tolist(), p.tolist(), np.floor(t / DT).astype(int).tolist()))


def test_first_leg_carries_nothing_about_the_second():
    threshold, offset = _sensor()
    for label, (a, b) in enumerate(nm.CLASSES):
        other = nm.CLASSES.index((a, nm.OPPOSITE[b]))                    # the other class with the same A
        m1 = nm.draw_motion(label, np.random.default_rng([5, label]))
        m2 = nm.draw_motion(other, np.random.default_rng([5, label]))    # same draws, B the other way
        e1 = nm.events_of(m1, threshold, offset, jitter=0.0, noise_rate_hz=0.0)
        e2 = nm.events_of(m2, threshold, offset, jitter=0.0, noise_rate_hz=0.0)
        first1, first2 = e1[e1["t"] < nm.LEG_US], e2[e2["t"] < nm.LEG_US]
        assert first1.size > 100 and np.array_equal(first1, first2)
        assert not np.array_equal(e1, e2)


def _reversed(mover):
    legs = [-leg for leg in reversed(mover["legs"])]
    return dict(mover, start=mover["start"] + sum(mover["legs"]), legs=legs)


def _direction(leg):
    return next(d for d, v in nm.DIRECTIONS.items() if np.allclose(np.sign(leg), v))


def test_played_backwards_a_recording_is_one_of_the_reversed_class():
    threshold, offset = _sensor(1)
    for label in range(len(nm.CLASSES)):
        movers = nm.draw_motion(label, np.random.default_rng([9, label]))
        back = [_reversed(m) for m in movers]
        target = tuple(_direction(leg) for leg in back[0]["legs"])
        assert nm.CLASSES.index(target) == nm.reverse_class(label) != label
        want, got = _steps(back, threshold, offset), _steps(movers, threshold, offset, reverse=True)
        diff = sum(((want - got) + (got - want)).values())
        # float rounding of the two paths may move an event whose level sits exactly on a boundary
        assert sum(want.values()) > 1000 and diff <= 0.002 * sum(want.values()), diff
    assert all(nm.swap_class(nm.swap_class(k)) == k != nm.swap_class(k) for k in range(8))


def test_shards_are_valid_and_read_as_frames(tmp_path):
    with open(os.path.join(ROOT, "datasets", "nmotion.yaml")) as f:
        card = yaml.safe_load(f)
    card["options"]["per_class"] = 6
    path = tmp_path / "nmotion.yaml"
    path.write_text(yaml.safe_dump(card))
    out = str(tmp_path / "shards")
    shard(str(path), None, out, workers=1, progress=False)
    assert verify(out) == []
    m = read_manifest(out)
    assert m["num_classes"] == 8 and m["sensor_size"] == [32, 32, 2] and m["kind"] == "events"
    assert sum(s["num_samples"] for s in m["splits"].values()) == 48
    x, y = next(iter(make_loader(out, "train", T=4, batch_size=8)))
    assert tuple(x.shape) == (4, 8, 2, 32, 32) and x.sum() > 0 and int(y.max()) < 8
