"""Augmentation (docs/method.md "Shards": augmentation happens in the reader).

Event frames ``[T, 2, H, W]`` get the NDA set (Li et al., "Neuromorphic Data Augmentation", 2022),
the same draw applied to every timestep: horizontal ``flip`` with probability p, then one of
``roll`` (translate with wrap-around by up to k pixels) or ``rotate`` (up to ±d degrees, nearest
neighbour), then ``cutout`` (zero a random s×s square). Point clouds ``[N, 3]`` get anisotropic
``scale`` in [lo, hi], ``shift`` by up to ±s, Gaussian ``jitter`` (σ, clipped at 5σ) and point
``dropout`` (up to a fraction of points replaced by the first point, as PointNet++ does).
The random generator is passed in, so every draw is deterministic for a seed, epoch and sample.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import rotate as nd_rotate

from chorus.data.errors import DataError

FRAME_DEFAULTS = {"flip": 0.5, "roll": 5, "rotate": 15.0, "cutout": 8}
POINT_DEFAULTS = {"scale": [0.8, 1.25], "shift": 0.1, "jitter": 0.01, "dropout": 0.875}


def resolve(augment, kind: str) -> dict | None:
    """Turn a recipe value (None, False, True, "default" or a dict of overrides) into settings.

    A dict overrides the defaults it names and keeps the others (``{"flip": 0.3}`` keeps roll,
    rotate and cutout); set an augmentation to 0 (or null) to turn it off."""
    if augment is None or augment is False:
        return None
    defaults = POINT_DEFAULTS if kind == "points" else FRAME_DEFAULTS
    if augment is True or augment == "default":
        return dict(defaults)
    if not isinstance(augment, dict):
        raise DataError(f"augment must be None, True, 'default' or a dict, got {augment!r}",
                        key="card:augment")
    for key in augment:
        if key not in defaults:
            raise DataError(f"unknown augmentation {key!r} for {kind} (known: {sorted(defaults)})",
                            key="card:augment")
    return {**defaults, **augment}


def augment_frames(frames: np.ndarray, rng: np.random.Generator, cfg: dict) -> np.ndarray:
    """NDA augmentation of one sample's frames ``[T, 2, H, W]`` (same draw for every timestep)."""
    if cfg.get("flip") and rng.random() < cfg["flip"]:
        frames = frames[..., ::-1]
    ops = [name for name in ("roll", "rotate") if cfg.get(name)]
    if ops:
        op = ops[rng.integers(len(ops))]
        if op == "roll":
            k = int(cfg["roll"])
            dy, dx = rng.integers(-k, k + 1, size=2)
            frames = np.roll(frames, (int(dy), int(dx)), axis=(-2, -1))
        else:
            angle = rng.uniform(-cfg["rotate"], cfg["rotate"])
            frames = nd_rotate(frames, angle, axes=(-1, -2), reshape=False, order=0)
    if cfg.get("cutout"):
        side = int(cfg["cutout"])
        height, width = frames.shape[-2:]
        cy, cx = rng.integers(0, height), rng.integers(0, width)
        frames = np.array(frames)
        frames[..., max(0, cy - side // 2):cy + (side + 1) // 2,
               max(0, cx - side // 2):cx + (side + 1) // 2] = 0
    return np.ascontiguousarray(frames)


def augment_points(points: np.ndarray, rng: np.random.Generator, cfg: dict) -> np.ndarray:
    """Scale, shift, jitter and point dropout of one cloud ``[N, 3]``."""
    points = np.array(points, dtype=np.float32)
    if cfg.get("dropout"):
        ratio = rng.random() * cfg["dropout"]
        drop = np.nonzero(rng.random(len(points)) <= ratio)[0]
        points[drop] = points[0]
    if cfg.get("scale"):
        low, high = cfg["scale"]
        points *= rng.uniform(low, high, size=3).astype(np.float32)
    if cfg.get("shift"):
        points += rng.uniform(-cfg["shift"], cfg["shift"], size=3).astype(np.float32)
    if cfg.get("jitter"):
        sigma = float(cfg["jitter"])
        noise = np.clip(rng.normal(0.0, sigma, size=points.shape), -5 * sigma, 5 * sigma)
        points += noise.astype(np.float32)
    return points
