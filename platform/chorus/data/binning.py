"""Events and spikes → T frames (docs/method.md "Shards": binning happens in the reader), vectorised.

Follows tonic's ``ToFrame`` conventions exactly (overlap 0):

- ``mode="count"`` (``n_event_bins=T``): each frame takes ``n // T`` consecutive events; the last
  ``n % T`` events are dropped.
- ``mode="time"`` (``n_time_bins=T``): window ``w = (t[-1] - t[0]) // T`` (integer µs); frame k holds
  events with ``t0 + k·w <= t < t0 + (k+1)·w``; later events are dropped.

Frames are event counts per polarity ``[T, 2, H, W]``. Resizing to ``size`` maps coordinates as
``x·size // W`` (the sum over the covered pixels, like tonic's ``Downsample`` then ``ToFrame``) when
shrinking, and repeats pixels (nearest neighbour) when growing.
"""
from __future__ import annotations

import numpy as np

from chorus.data import binning_jit


def _lookup(n: int, size: int | None) -> np.ndarray:
    """Coordinate map 0..n-1 → 0..size-1 as ``c·size // n`` (identity when not shrinking)."""
    if size is None or size >= n:
        return np.arange(n, dtype=np.int64)
    return np.arange(n, dtype=np.int64) * size // n


def batch_event_frames(samples: list[np.ndarray], sensor_size, T: int, size: int | None = None,
                       mode: str = "count", jit: bool = True, bad: list | None = None
                       ) -> np.ndarray:
    """Counts ``float32 [T, B, 2, S, S]`` of B event samples in one vectorised pass.

    Each event gets the offset of its (frame, sample) slot (per-sample tonic conventions, see the
    module docstring), plus its cell, the coordinates going through small lookup tables; dropped
    events go to one spare slot; one ``bincount`` then writes the time-first batch. Events must lie
    on the sensor (the numpy path trusts callers to have checked). With ``jit`` and numba installed,
    the same counts come from one compiled pass per sample (:mod:`chorus.data.binning_jit`), which
    checks the events itself: samples with events off the sensor add nothing and their positions
    are appended to ``bad``."""
    width, height = int(sensor_size[0]), int(sensor_size[1])
    if mode not in ("count", "time"):
        raise ValueError(f"bin mode must be 'count' or 'time', got {mode!r}")
    batch = len(samples)
    lut_x = _lookup(width, size)
    lut_y = _lookup(height, size)
    out_w, out_h = int(lut_x[-1]) + 1, int(lut_y[-1]) + 1
    compiled = binning_jit.kernel() if jit else None
    if compiled is not None:
        frames = np.zeros((T, batch, 2, out_h, out_w), dtype=np.float32)
        for b, events in enumerate(samples):
            first = compiled(events["x"], events["y"], events["t"], events["p"], lut_x, lut_y,
                             frames, b, mode == "count")
            if first >= 0:
                if bad is None:
                    raise ValueError(f"sample {b}: event {first} is off the sensor")
                bad.append(b)
        return upscale(frames, size)
    cells = 2 * out_h * out_w
    dropped = T * batch * cells                 # one extra bincount slot for dropped events
    flat = np.empty(sum(len(e) for e in samples), dtype=np.int64)
    start = 0
    for b, events in enumerate(samples):
        n = len(events)
        part = flat[start:start + n]
        if mode == "count":
            per_bin = n // T
            part[:] = dropped
            if per_bin:
                frames_of = np.repeat(np.arange(T, dtype=np.int64) * (batch * cells), per_bin)
                part[:T * per_bin] = frames_of + b * cells
        else:
            t = events["t"].astype(np.int64)
            window = (int(t[-1]) - int(t[0])) // T if n else 0
            if window == 0:
                part[:] = dropped
            else:
                frame = (t - t[0]) // window
                part[:] = np.where(frame < T, frame * (batch * cells) + b * cells, dropped)
        start += n
    flat += lut_x[np.concatenate([e["x"] for e in samples])]
    flat += lut_y[np.concatenate([e["y"] for e in samples])] * out_w
    flat += np.concatenate([e["p"] for e in samples]).astype(np.int64) * (out_h * out_w)
    np.minimum(flat, dropped, out=flat)
    frames = np.bincount(flat, minlength=dropped + 1)[:dropped].astype(np.float32)
    return upscale(frames.reshape(T, batch, 2, out_h, out_w), size)


def upscale(frames: np.ndarray, size: int | None) -> np.ndarray:
    """Nearest-neighbour growth of the last two axes to ``size`` (no-op when not larger)."""
    height, width = frames.shape[-2:]
    if size is None or (size <= height and size <= width):
        return frames
    rows = np.arange(size) * height // size if size > height else np.arange(height)
    cols = np.arange(size) * width // size if size > width else np.arange(width)
    flat = (rows[:, None] * width + cols[None, :]).reshape(-1)
    lead = frames.shape[:-2]
    return frames.reshape(-1, height * width)[:, flat].reshape(*lead, len(rows), len(cols))


def events_to_frames(events: np.ndarray, sensor_size, T: int, size: int | None = None,
                     mode: str = "count") -> np.ndarray:
    """Counts ``float32 [T, 2, S, S]`` (``[T, 2, H, W]`` when ``size`` is None) from (x, y, t, p)."""
    return batch_event_frames([events], sensor_size, T, size, mode)[:, 0]


def spike_indices(spikes: np.ndarray, T: int, duration: float) -> tuple[np.ndarray, np.ndarray]:
    """Per kept spike: its bin (bin k covers ``[k, k+1)·duration/T``; later spikes dropped), unit."""
    bins = np.floor(spikes["t"].astype(np.float64) / duration * T).astype(np.int64)
    keep = (bins >= 0) & (bins < T)
    return bins[keep], spikes["unit"][keep].astype(np.int64)


def spikes_to_bins(spikes: np.ndarray, channels: int, T: int, duration: float) -> np.ndarray:
    """Spike counts ``float32 [T, channels]``."""
    bins, units = spike_indices(spikes, T, duration)
    counts = np.bincount(bins * channels + units, minlength=T * channels)
    return counts.astype(np.float32).reshape(T, channels)
