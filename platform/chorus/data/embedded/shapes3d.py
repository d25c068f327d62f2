"""Shapes3D: procedural point clouds of 10 solids (docs/method.md "Shards": ``points.npy`` float32 [N, 3]).

The embedded point-cloud dataset. Each sample draws ``POINTS`` points uniformly (by area) from the
surface of one solid, then applies a random anisotropic scale, a random rotation about the up axis
with a small tilt, and Gaussian noise, all from ``numpy.random.default_rng([seed, index])``.
"""
from __future__ import annotations

import numpy as np

POINTS = 1024
PER_CLASS = 100
CLASSES = ["sphere", "cube", "cylinder", "cone", "torus", "pyramid", "octahedron", "tetrahedron",
           "capsule", "hemisphere"]


def _triangles(rng, vertices: np.ndarray, faces: list[tuple[int, int, int]], n: int) -> np.ndarray:
    """n points uniform by area on a triangle mesh."""
    tri = vertices[np.array(faces)]                                    # [F, 3, 3]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    pick = rng.choice(len(faces), size=n, p=area / area.sum())
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    a, b, c = tri[pick, 0], tri[pick, 1], tri[pick, 2]
    return a + u[:, None] * (b - a) + v[:, None] * (c - a)


def _sphere(rng, n: int) -> np.ndarray:
    p = rng.standard_normal((n, 3))
    return 0.5 * p / np.linalg.norm(p, axis=1, keepdims=True)


def _disk(rng, n: int, radius: float, z: float) -> np.ndarray:
    r = radius * np.sqrt(rng.random(n))
    a = rng.uniform(0, 2 * np.pi, n)
    return np.stack([r * np.cos(a), r * np.sin(a), np.full(n, z)], axis=1)


def _tube(rng, n: int, radius: float, z0: float, z1: float) -> np.ndarray:
    a = rng.uniform(0, 2 * np.pi, n)
    return np.stack([radius * np.cos(a), radius * np.sin(a), rng.uniform(z0, z1, n)], axis=1)


def _mix(rng, n: int, parts: list[tuple[float, callable]]) -> np.ndarray:
    """Split n points over surface parts in proportion to their areas."""
    areas = np.array([a for a, _ in parts])
    counts = rng.multinomial(n, areas / areas.sum())
    return np.concatenate([make(c) for c, (_, make) in zip(counts, parts)])


def _surface(rng, name: str, n: int) -> np.ndarray:
    if name == "sphere":
        return _sphere(rng, n)
    if name == "cube":
        corners = np.array([[x, y, z] for x in (-.5, .5) for y in (-.5, .5) for z in (-.5, .5)])
        faces = [(0, 1, 3), (0, 3, 2), (4, 5, 7), (4, 7, 6), (0, 1, 5), (0, 5, 4),
                 (2, 3, 7), (2, 7, 6), (0, 2, 6), (0, 6, 4), (1, 3, 7), (1, 7, 5)]
        return _triangles(rng, corners, faces, n)
    if name == "cylinder":
        r, h = 0.4, 1.0
        return _mix(rng, n, [(2 * np.pi * r * h, lambda c: _tube(rng, c, r, -h / 2, h / 2)),
                             (np.pi * r * r, lambda c: _disk(rng, c, r, -h / 2)),
                             (np.pi * r * r, lambda c: _disk(rng, c, r, h / 2))])
    if name == "cone":
        r, h = 0.5, 1.0
        slant = np.hypot(r, h)

        def side(c):
            s = np.sqrt(rng.random(c))                       # distance from the apex, by area
            a = rng.uniform(0, 2 * np.pi, c)
            return np.stack([r * s * np.cos(a), r * s * np.sin(a), h / 2 - h * s], axis=1)
        return _mix(rng, n, [(np.pi * r * slant, side),
                             (np.pi * r * r, lambda c: _disk(rng, c, r, -h / 2))])
    if name == "torus":
        big, small = 0.35, 0.15
        out = np.empty((0, 3))
        while len(out) < n:                                  # rejection sampling by area
            u, v = rng.uniform(0, 2 * np.pi, (2, 2 * n))
            keep = rng.random(2 * n) < (big + small * np.cos(v)) / (big + small)
            u, v = u[keep], v[keep]
            ring = big + small * np.cos(v)
            out = np.concatenate([out, np.stack([ring * np.cos(u), ring * np.sin(u),
                                                 small * np.sin(v)], axis=1)])
        return out[:n]
    if name == "pyramid":
        v = np.array([[-.5, -.5, -.4], [.5, -.5, -.4], [.5, .5, -.4], [-.5, .5, -.4], [0, 0, .6]])
        return _triangles(rng, v, [(0, 1, 2), (0, 2, 3), (0, 1, 4), (1, 2, 4), (2, 3, 4),
                                   (3, 0, 4)], n)
    if name == "octahedron":
        v = 0.6 * np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])
        faces = [(a, b, c) for a in (0, 1) for b in (2, 3) for c in (4, 5)]
        return _triangles(rng, v, faces, n)
    if name == "tetrahedron":
        v = 0.45 * np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]])
        return _triangles(rng, v, [(0, 1, 2), (0, 1, 3), (0, 2, 3), (1, 2, 3)], n)
    if name == "capsule":
        r, h = 0.25, 0.5

        def cap(c, sign):
            p = _sphere(rng, c) * (r / 0.5)
            p[:, 2] = sign * np.abs(p[:, 2]) + sign * h / 2
            return p
        return _mix(rng, n, [(2 * np.pi * r * h, lambda c: _tube(rng, c, r, -h / 2, h / 2)),
                             (2 * np.pi * r * r, lambda c: cap(c, 1.0)),
                             (2 * np.pi * r * r, lambda c: cap(c, -1.0))])
    if name == "hemisphere":
        r = 0.5

        def dome(c):
            p = _sphere(rng, c)
            p[:, 2] = np.abs(p[:, 2]) - 0.25
            return p
        return _mix(rng, n, [(2 * np.pi * r * r, dome),
                             (np.pi * r * r, lambda c: _disk(rng, c, r, -0.25))])
    raise ValueError(f"unknown shape {name!r}")


def generate_sample(label: int, seed: int, index: int, points: int = POINTS) -> np.ndarray:
    """One float32 ``[points, 3]`` cloud of class ``label`` (an index into :data:`CLASSES`)."""
    rng = np.random.default_rng([seed, index])
    cloud = _surface(rng, CLASSES[label], points)
    cloud = cloud * rng.uniform(0.75, 1.25) * rng.uniform(0.9, 1.1, size=3)
    yaw = rng.uniform(0, 2 * np.pi)
    tilt = rng.uniform(-np.pi / 12, np.pi / 12)
    rz = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt), np.cos(tilt)]])
    cloud = cloud @ (rz @ rx).T + rng.normal(0.0, 0.01, size=cloud.shape)
    return cloud[rng.permutation(points)].astype(np.float32)
