"""Decoded samples → one batch tensor (docs/method.md "Shards": binning happens in the reader).

Vectorised per batch: the events of all samples are binned together
(:func:`chorus.data.binning.batch_event_frames`), one ``bincount`` writing the ``[T, B, 2, h, w]``
counts directly, time first. Spikes are binned the same way into
``[T, B, channels]``; pre-binned frames are checked against T and size and stacked; points keep their
first ``N`` points ``[B, N, 3]``. Augmentation (train only) is drawn per sample. Validation errors
name the shard and the sample key.
"""
from __future__ import annotations

import numpy as np

from chorus.data import binning_jit, records
from chorus.data.augment import augment_frames, augment_points
from chorus.data.binning import batch_event_frames, spike_indices
from chorus.data.errors import DataError


class BatchBuilder:
    """``prepare(payload, seed, where, key)`` per sample, then ``collate(prepared)``."""

    def __init__(self, manifest: dict, T: int, size: int | None, bins: str, augment: dict | None):
        self.kind = manifest["kind"]
        self.sensor = manifest.get("sensor_size")
        self.T = int(T)
        self.size = size
        self.bins = bins
        self.augment = augment
        self.frames = manifest.get("frames")
        self.duration = float((manifest.get("options") or {}).get("duration", 1.0))
        if bins not in ("count", "time"):
            raise DataError(f"bins must be 'count' or 'time', got {bins!r}")
        if self.kind == "frames" and self.frames:
            if self.T != self.frames["T"] or (size is not None and size != self.frames["size"]):
                stored = self.frames["size"]
                if stored is None:
                    stored = "None (the sensor's {}x{})".format(*self._frame_hw())
                raise DataError(f"shards are pre-binned at T={self.frames['T']}, size={stored}; "
                                f"asked for T={T}, size={size}", where=manifest.get("folder"))
        if self.kind == "points":
            self.num_points = int(size or manifest.get("num_points") or 1024)
        self.jit = binning_jit.kernel() is not None

    def _frame_hw(self) -> tuple[int, int]:
        """(height, width) of pre-binned frames: ``size``², or the sensor's H×W when stored
        without one."""
        if self.frames.get("size") is None:
            return int(self.sensor[1]), int(self.sensor[0])
        return int(self.frames["size"]), int(self.frames["size"])

    def empty(self) -> np.ndarray:
        """A float32 batch of 0 samples with the shape :meth:`collate` gives."""
        if self.kind == "points":
            return np.zeros((0, self.num_points, 3), dtype=np.float32)
        if self.kind == "spikes":
            return np.zeros((self.T, 0, int(self.sensor[0])), dtype=np.float32)
        if self.kind == "frames" and self.frames:
            height, width = self._frame_hw()
        elif self.size is None:
            width, height = int(self.sensor[0]), int(self.sensor[1])
        else:
            height = width = int(self.size)
        return np.zeros((self.T, 0, 2, height, width), dtype=np.float32)

    def prepare(self, payload: np.ndarray, seed: tuple, where: str, key: str):
        """Validate one sample and reduce it to what :meth:`collate` needs; ``seed`` seeds its
        augmentation draws (a generator is made only when augmenting)."""
        if self.kind == "events":
            if self.jit:                    # the compiled pass checks coordinates and polarity
                records.check_event_fields(payload, where=where, key=key)
            else:
                records.check_events(payload, self.sensor, where=where, key=key)
            return payload, seed, where, key
        if self.kind == "frames":
            height, width = self._frame_hw() if self.frames else payload.shape[-2:]
            if payload.shape != (self.T, 2, height, width):
                raise DataError(f"frames have shape {payload.shape}, expected "
                                f"[{self.T}, 2, {height}, {width}]", where=where, key=key)
            return payload, seed
        if self.kind == "spikes":
            channels = int(self.sensor[0])
            records.check_spikes(payload, channels, where=where, key=key)
            return spike_indices(payload, self.T, self.duration)
        records.check_points(payload, where=where, key=key)
        if len(payload) < self.num_points:
            raise DataError(f"{len(payload)} points, fewer than the {self.num_points} asked",
                            where=where, key=key)
        points = payload[:self.num_points, :3].astype(np.float32)
        if self.augment:
            points = augment_points(points, np.random.default_rng(seed), self.augment)
        return points

    def collate(self, prepared: list) -> tuple[np.ndarray, list]:
        """The batch (``[T, B, 2, S, S]``, ``[T, B, channels]`` or ``[B, N, 3]`` float32) and the
        bad samples found while binning, as ``(position, DataError)``."""
        batch = len(prepared)
        bad: list = []
        if self.kind == "points":
            return np.stack(prepared).astype(np.float32, copy=False), bad
        if self.kind == "spikes":
            channels = int(self.sensor[0])
            flat = np.concatenate([bins * (batch * channels) + b * channels + units
                                   for b, (bins, units) in enumerate(prepared)])
            counts = np.bincount(flat, minlength=self.T * batch * channels)
            return counts.astype(np.float32).reshape(self.T, batch, channels), bad
        if self.kind == "frames":
            out = np.stack([frames for frames, _ in prepared], axis=1).astype(np.float32)
        else:
            positions: list = []
            out = batch_event_frames([item[0] for item in prepared], self.sensor, self.T,
                                     self.size, self.bins, jit=self.jit, bad=positions)
            for b in positions:
                events, _, where, key = prepared[b]
                try:
                    records.check_events(events, self.sensor, where=where, key=key)
                except DataError as error:
                    bad.append((b, error))
                else:                   # never silently keep the all-zero frames of a flagged sample
                    bad.append((b, DataError("the binning kernel rejected an event (off the "
                                             "sensor or polarity not 0/1)", where=where,
                                             key=key)))
        if self.augment:
            for b, item in enumerate(prepared):
                out[:, b] = augment_frames(out[:, b], np.random.default_rng(item[1]), self.augment)
        return out, bad
