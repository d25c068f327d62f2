"""One decoded sample → the model's per-sample input (DESIGN.md "Shards": binning in the reader).

Events → ``[T, 2, S, S]`` frames (tonic's ToFrame conventions, :mod:`chorus.data.binning`);
pre-binned frames are checked against the requested T and size; SHD spikes → ``[T, channels]``;
points → the first ``size`` points ``[N, 3]``. Validation errors name the shard and the sample key.
"""
from __future__ import annotations

import numpy as np

from chorus.data import records
from chorus.data.augment import augment_frames, augment_points
from chorus.data.binning import events_to_frames, spikes_to_bins
from chorus.data.errors import DataError


class SampleTransform:
    """Callable ``(payload, rng, where, key) -> float32 array`` for one shard set and recipe."""

    def __init__(self, manifest: dict, T: int, size: int | None, bins: str, augment: dict | None):
        self.kind = manifest["kind"]
        self.sensor = manifest.get("sensor_size")
        self.T = int(T)
        self.size = size
        self.bins = bins
        self.augment = augment
        self.frames = manifest.get("frames")
        self.duration = float((manifest.get("options") or {}).get("duration", 1.0))
        if self.kind == "frames" and self.frames:
            if self.T != self.frames["T"] or (size is not None and size != self.frames["size"]):
                raise DataError(f"shards are pre-binned at T={self.frames['T']}, size="
                                f"{self.frames['size']}; asked for T={T}, size={size}",
                                where=manifest.get("folder"))
        if self.kind == "points":
            self.num_points = int(size or manifest.get("num_points") or 1024)

    def __call__(self, payload: np.ndarray, rng: np.random.Generator, where: str,
                 key: str) -> np.ndarray:
        if self.kind == "events":
            records.check_events(payload, self.sensor, where=where, key=key)
            out = events_to_frames(payload, self.sensor, self.T, self.size, self.bins)
            if self.augment:
                out = augment_frames(out, rng, self.augment)
        elif self.kind == "frames":
            if payload.ndim != 4 or payload.shape[0] != self.T or payload.shape[1] != 2:
                raise DataError(f"frames have shape {payload.shape}, expected [{self.T}, 2, S, S]",
                                where=where, key=key)
            out = payload.astype(np.float32)
            if self.augment:
                out = augment_frames(out, rng, self.augment)
        elif self.kind == "spikes":
            channels = int(self.sensor[0])
            records.check_spikes(payload, channels, where=where, key=key)
            out = spikes_to_bins(payload, channels, self.T, self.duration)
        else:
            records.check_points(payload, where=where, key=key)
            if len(payload) < self.num_points:
                raise DataError(f"{len(payload)} points, fewer than the {self.num_points} asked",
                                where=where, key=key)
            out = payload[:self.num_points, :3].astype(np.float32)
            if self.augment:
                out = augment_points(out, rng, self.augment)
        return np.ascontiguousarray(out, dtype=np.float32)
