"""Embedded datasets: N-Digits event streams and Shapes3D point clouds (chorus.data.embedded)."""
import os

import numpy as np
import pytest
import torch
from sklearn.linear_model import RidgeClassifier
from sklearn.neighbors import KNeighborsClassifier

from chorus.data import make_loader, shard
from chorus.data.embedded import ndigits, shapes3d

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ndigits_deterministic_per_seed_and_physically_plausible():
    images, _ = ndigits.load_digits_arrays()
    a = ndigits.generate_sample(images[5], seed=0, index=5)
    b = ndigits.generate_sample(images[5], seed=0, index=5)
    c = ndigits.generate_sample(images[5], seed=1, index=5)
    np.testing.assert_array_equal(a, b)
    assert len(a) != len(c) or not np.array_equal(a, c)
    assert np.all(np.diff(a["t"].astype(np.int64)) >= 0)
    assert a["x"].max() < 34 and a["y"].max() < 34 and set(np.unique(a["p"])) == {0, 1}
    assert 0 <= a["t"].min() and a["t"].max() < 300_000
    assert 1000 < len(a) < 20000
    # moving a bright digit over a dark screen: ON events at the leading edge balance OFF events
    assert 0.35 < a["p"].mean() < 0.65
    # events come from where the digit is: the ink's bounding box, widened by the saccades
    ink = images[5] > 0.3
    rows, cols = np.nonzero(ink)
    centre = 16.5
    lo_x = centre + (cols.min() - 3.5) * 3 - 6
    hi_x = centre + (cols.max() - 3.5) * 3 + 6
    inside = (a["x"] >= lo_x) & (a["x"] <= hi_x)
    assert inside.mean() > 0.9


@pytest.mark.slow
def test_ndigits_frames_at_34_and_T4_carry_the_digit(tmp_path):
    """A linear classifier on the binned frames of the full N-Digits set classifies well."""
    out = str(tmp_path / "ndigits")
    shard(os.path.join(ROOT, "datasets", "ndigits.yaml"), None, out, workers=2,
          progress=False)

    def arrays(split):
        xs, ys = [], []
        for x, y in make_loader(out, split, T=4, size=34, batch_size=64, workers=2):
            xs.append(x.transpose(0, 1).reshape(x.shape[1], -1))
            ys.append(y)
        return torch.cat(xs).numpy(), torch.cat(ys).numpy()

    x_train, y_train = arrays("train")
    x_test, y_test = arrays("test")
    assert len(x_train) + len(x_test) > 1600
    clf = RidgeClassifier(alpha=10.0).fit(np.log1p(x_train), y_train)
    assert clf.score(np.log1p(x_test), y_test) >= 0.9


def test_shapes3d_clouds_are_on_their_surfaces_and_separable(tmp_path):
    cube = shapes3d.generate_sample(1, seed=0, index=3)
    assert cube.shape == (1024, 3) and cube.dtype == np.float32 and np.isfinite(cube).all()
    np.testing.assert_array_equal(cube, shapes3d.generate_sample(1, seed=0, index=3))
    sphere = shapes3d._surface(np.random.default_rng(0), "sphere", 500)
    np.testing.assert_allclose(np.linalg.norm(sphere, axis=1), 0.5)
    box = shapes3d._surface(np.random.default_rng(0), "cube", 500)
    assert np.allclose(np.abs(box).max(axis=1), 0.5)
    torus = shapes3d._surface(np.random.default_rng(0), "torus", 500)
    ring = np.hypot(torus[:, 0], torus[:, 1])
    np.testing.assert_allclose(np.hypot(ring - 0.35, torus[:, 2]), 0.15, atol=1e-12)

    out = str(tmp_path / "shapes")
    manifest = shard(os.path.join(ROOT, "datasets", "shapes3d.yaml"), None, out,
                     workers=1, progress=False)
    assert manifest["kind"] == "points" and manifest["num_classes"] == 10

    def features(split):
        """Rotation-invariant descriptor: histogram of distances to the centroid."""
        fs, ys = [], []
        for x, y in make_loader(out, split, T=1, batch_size=50):
            assert x.shape == (len(y), 1024, 3)
            d = torch.linalg.norm(x - x.mean(1, keepdim=True), dim=2)
            d = d / d.mean(1, keepdim=True)
            fs.append(torch.stack([torch.histc(r, 24, 0, 2.5) for r in d]))
            ys.append(y)
        return torch.cat(fs).numpy(), torch.cat(ys).numpy()

    x_train, y_train = features("train")
    x_test, y_test = features("test")
    knn = KNeighborsClassifier(5).fit(x_train, y_train)
    assert knn.score(x_test, y_test) > 0.8
